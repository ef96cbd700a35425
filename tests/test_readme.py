"""The README's quick start runs as written, in a fresh directory, as a new user runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def block_after(marker):
    """The fenced code block that follows the HTML comment starting with `marker`."""
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(marker) + r"[^\n]*-->\n```\w*\n(.*?)\n```", text, re.S)
    assert match, f"README.md has no code block after {marker!r}"
    return match.group(1)


def block_under(heading):
    """The first python code block of the README section `heading`."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)\n```", section, re.S).group(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory like a clone: the shipped sample data, nothing else."""
    path = tmp_path_factory.mktemp("user")
    (path / "data").symlink_to(ROOT / "data")
    return path


def run(command, cwd, **kwargs):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def test_quick_start_commands_train_export_and_predict(workdir):
    commands = [line for line in block_after("<!-- quickstart: shell").splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["train", "export", "predict"]
    results = [run(command, workdir, shell=True) for command in commands]
    for command, result in zip(commands, results):
        assert result.returncode == 0, f"{command}\n{result.stderr}"
    assert (workdir / "runs/quickstart/export/1/saved_model.pb").is_file()
    assert "runs/quickstart/export/1" in results[1].stdout
    label, probability, text = results[2].stdout.strip().split(None, 2)
    assert label in {"positive", "negative"}
    assert 0.5 <= float(probability) <= 1.0  # the chosen label's probability
    assert text == "a warm, funny and moving film"


def test_quick_start_python_trains_predicts_and_exports(workdir):
    code = block_after("<!-- quickstart: python")
    result = run([sys.executable, "-c", code], workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    prediction, export = lines[-2], lines[-1]
    assert prediction.startswith("[{'label': ") and "'probabilities': {" in prediction
    assert export.endswith("runs/quickstart-python/export/1")
    assert (workdir / "runs/quickstart-python/export/1/saved_model.pb").is_file()


def test_the_parts_example_builds_a_model_on_its_tokeniser():
    code = block_under("The parts on their own") + "\nprint(tuple(model(tokenizer(['A raw string.'])).shape))"
    result = run([sys.executable, "-c", code], ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(1, 1)"
