"""The built package: `python -m build` makes a wheel and an sdist that hold what an installed
nlptool needs (its shipped configs, `py.typed`, the licence), and the wheel works in a fresh
virtual environment outside the repository.

The default test installs the wheel alone into a fresh venv and lends it this environment's
dependencies through a path file (TensorFlow is large; a path file adds a directory to
`sys.path` without running the editable install's hook in it, so `import nlptool` is the
wheel's). The slow variant installs the wheel with its dependencies as a user would.
"""

import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import nlptool

ROOT = Path(__file__).resolve().parents[1]


def run(command, cwd, env=None, timeout=900):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], ROOT)
    return out


def test_wheel_and_sdist_hold_the_configs_the_marker_and_the_licence(dist):
    (wheel,) = dist.glob("nlptool_gru-*.whl")
    (sdist,) = dist.glob("nlptool_gru-*.tar.gz")
    assert wheel.name == f"nlptool_gru-{nlptool.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"nlptool/configs/{path.name}" for path in (ROOT / "nlptool" / "configs").glob("*.yaml")}
    assert shipped and shipped <= names
    presets = {f"nlptool/presets/{path.parent.name}/{path.name}" for path in (ROOT / "nlptool" / "presets").glob("*/*")}
    assert "nlptool/presets/english-small/weights.npz" in presets and presets <= names
    assert not any("__pycache__" in name for name in names)
    assert "nlptool/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith(("tests/", "benchmarks/", "recipes/")) for name in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Name: nlptool-gru" in metadata and f"Version: {nlptool.__version__}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    members = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "nlptool/configs/sentiment_sst2.yaml"} <= members


def fresh_venv(path, lend_dependencies):
    venv.EnvBuilder(with_pip=True).create(path)
    python = path / "bin" / "python"
    if lend_dependencies:
        purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path).strip())
        (purelib / "lent_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def smoke(python, workdir):
    """What a user does first with the installed package, away from the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    where = run([python, "-c", "import nlptool; print(nlptool.__file__); print(nlptool.__version__)"], workdir, env)
    location, version = where.split()
    assert Path(location).is_relative_to(python.parent.parent) and version == nlptool.__version__
    assert f"nlptool {nlptool.__version__}" in run(["nlptool", "--version"], workdir, env)
    listed = run(["nlptool", "configs", "sentiment"], workdir, env)
    assert [line.split()[1] for line in listed.splitlines()] == ["demo", "imdb", "sst2"]
    rows = ["text,label"] + [f"a fine and lovely film number {i},positive" for i in range(12)]
    rows += [f"a dull and tired film number {i},negative" for i in range(12)]
    (workdir / "reviews.csv").write_text("\n".join(rows) + "\n")
    tiny = ["--set", "model.units=4", "--set", "model.embedding_dim=4", "--epochs", "1"]
    run(["nlptool", "train", "sentiment", "--train-file", "reviews.csv", "--config", "sst2", *tiny,
         "--run-dir", "runs/tiny"], workdir, env)  # fmt: skip
    assert "model:\n  embedding_dim: 4" in (workdir / "runs/tiny/config.yaml").read_text()
    run(["nlptool", "export", "runs/tiny"], workdir, env)
    label = run(["nlptool", "predict", "runs/tiny/export", "a lovely film"], workdir, env).split()[0]
    assert label in {"positive", "negative"}
    # the shipped preset, unpacked into the user's cache on first use
    env["NLPTOOL_CACHE_DIR"] = str(workdir / "cache")
    assert "preset:english-small" in run(["nlptool", "presets"], workdir, env)
    run(["nlptool", "train", "sentiment", "--train-file", "reviews.csv", "--init-from", "preset:english-small",
         "--epochs", "1", "--run-dir", "runs/preset"], workdir, env)  # fmt: skip
    assert "embedding_dim: 128" in (workdir / "runs/preset/config.yaml").read_text()


def test_wheel_works_in_a_fresh_venv_outside_the_repository(dist, tmp_path):
    python = fresh_venv(tmp_path / "venv", lend_dependencies=True)
    (wheel,) = dist.glob("*.whl")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], tmp_path)
    (tmp_path / "work").mkdir()
    smoke(python, tmp_path / "work")


@pytest.mark.slow
def test_wheel_installs_with_its_dependencies(dist, tmp_path):
    python = fresh_venv(tmp_path / "venv", lend_dependencies=False)
    (wheel,) = dist.glob("*.whl")
    run([python, "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, timeout=1800)
    (tmp_path / "work").mkdir()
    smoke(python, tmp_path / "work")
