"""The documentation: the generated config reference is current and complete, the site builds
without a warning (broken links included), and user-facing text names no internal issue."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nlptool import config_reference, tasks

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    written = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert written == config_reference.markdown(), (
        "docs/configuration.md is stale: run `python -m nlptool.config_reference docs/configuration.md`"
    )


@pytest.mark.parametrize("name", tasks.names())
def test_every_config_key_has_a_meaning_a_type_and_a_default(name):
    docs = config_reference.keys(tasks.get(name).config_class)
    assert len({doc.key for doc in docs}) == len(docs) > 10
    missing = [doc.key for doc in docs if not doc.meaning]
    assert not missing, f"{name}: no comment beside these fields: {missing}"
    assert all(doc.type and doc.default != "(required)" for doc in docs)


def test_reference_reads_comments_and_ranges_from_the_classes():
    docs = {doc.key: doc for doc in config_reference.keys(tasks.get("sentiment").config_class)}
    units = docs["model.units"]
    assert (units.type, units.default, units.allowed) == ("int", "`128`", ">= 1")
    assert units.meaning == "GRU state size per direction"
    # a field redeclared to change its default keeps the base class's meaning
    assert docs["training.batch_size"].meaning == "examples per step"
    assert docs["training.clip_norm"].type == "float \\| null"
    assert docs["model.pooling"].type == '`"last"` \\| `"max_mean"`'
    # a comment on the lines above a field is its meaning
    lm = {doc.key: doc for doc in config_reference.keys(tasks.get("language-model").config_class)}
    assert lm["tokenizer.unit"].meaning.startswith('"line": every line is a sentence ending in </s>')


def test_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "nlptool.api.train" in api and "BahdanauAttention" in api  # the reference was rendered


INTERNAL = re.compile(r"\bissues? ?#?\d+\b|\bissue-\d+\b", re.IGNORECASE)


def user_facing_files():
    yield ROOT / "README.md"
    yield ROOT / "CHANGELOG.md"
    yield from (ROOT / "docs").rglob("*.md")
    for folder in ("nlptool", "recipes", "benchmarks"):
        yield from (ROOT / folder).rglob("*.py")
    yield from (ROOT / "nlptool" / "configs").glob("*.yaml")
    yield from (ROOT / "notebooks").glob("*.py")


def test_no_internal_issue_numbers_in_user_facing_text():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in user_facing_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not found, "\n".join(found)
