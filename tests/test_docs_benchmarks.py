"""docs/benchmarks.md matches benchmarks/results/*.json: every generated
section is what benchmarks/render_docs.py would write, and each table has
one line per entry of its results file."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS_DIR))
import docs_section  # noqa: E402
import render_docs  # noqa: E402


def shape(row):
    s = row["shape"]
    return f"({s['batch']}, {s['time']}, {s['input']}, {s['units']})"


# name -> (the expected first cells of each of the section's tables, from the results file; None: not measured)
EXPECTED = {
    "gru": lambda r: [[shape(row) for row in r["rows"] for _ in ("forward", "fwd+bwd")]],
    "tokenizers": lambda r: [[row["tokenizer"] for row in r["rows"]]],
    "sentiment": lambda r: [[row["name"] for row in r["rows"]]],
    "language_model": lambda r: [[None] * len(r["rows"])],
    "lm_optimizers": lambda r: [[row["optimizer"] for row in r["rows"]]],
    "sampled_softmax": lambda r: [
        [f"sampled, {row['softmax_samples']:,} draws" if row["softmax_samples"] else "full" for row in r["rows"]]
    ],
    "translation": lambda r: [[None] * len(r["rows"]), [None] * (2 * len(r["rows"]))],
    "transfer": lambda r: [[None] * len(r["rows"])],
    "small_data": lambda r: [[None] * len({row["dataset"] for row in r["rows"]})],
    "fine_tuning": lambda r: [[None] * len({(row["dataset"], row["variant"]) for row in r["rows"]})],
    "peers": lambda r: [[row["task"] for row in r["rows"] for _ in range(1 + len(row["peers"]))]],
    "summarization": lambda r: [[row["name"] for row in r["rows"]]],
    "serving": lambda r: [[kind for kind, result in r["results"].items() for _ in result["http"]]],
    "distributed": lambda r: [[row["task"] for row in r["rows"]]],
    "cli_startup": lambda r: [[f"`{row['command']}`" for row in r["rows"]]],
    "fuzz": lambda r: [] if r is None else [[None] * sum(len(row["bands"]) for row in r["rows"])],
}


def tables(text):
    """The body rows (lists of cells) of each markdown table in `text`."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                found.append(current)
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        else:
            current = None
    for table in found:
        assert set("".join(table[1])) <= set("-:"), f"no separator line under the header {table[0]}"
    return [table[2:] for table in found]


def test_every_benchmark_with_a_results_file_has_a_section():
    assert set(EXPECTED) == set(render_docs.BENCHMARKS)
    scripts = {path.stem for path in BENCHMARKS_DIR.glob("*.py")}
    results = {path.stem for path in (BENCHMARKS_DIR / "results").glob("*.json")}
    assert results <= set(render_docs.BENCHMARKS) <= scripts


def test_docs_benchmarks_is_up_to_date(capsys):
    code = render_docs.main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_check_names_the_stale_section_and_a_render_mends_it(tmp_path, capsys):
    good = docs_section.DOCS.read_text()
    module = render_docs.load("sampled_softmax")
    inside = docs_section.section(good, module.MARKERS)
    assert "| full |" in inside
    stale = tmp_path / "benchmarks.md"
    stale.write_text(good.replace(inside, inside.replace("| full |", "| full (edited by hand) |")))

    assert render_docs.main(["--check", "--docs", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "stale sections: sampled_softmax " in err  # that one, and no other

    assert render_docs.main(["--docs", str(stale)]) == 0
    assert stale.read_text() == good
    assert render_docs.main(["--check", "--docs", str(stale)]) == 0


def test_a_section_without_its_markers_is_an_error(tmp_path):
    broken = tmp_path / "benchmarks.md"
    broken.write_text(docs_section.DOCS.read_text().replace("<!-- /transfer -->", ""))
    with pytest.raises(SystemExit, match="/transfer"):
        render_docs.main(["--check", "--docs", str(broken)])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_table_has_one_line_per_entry_of_its_results_file(name):
    module = render_docs.load(name)
    results = docs_section.load_results(module.RESULTS, missing_ok=getattr(module, "RESULTS_OPTIONAL", False))
    section = docs_section.section(docs_section.DOCS.read_text(), module.MARKERS)
    found = tables(section)
    expected = EXPECTED[name](results)
    assert [len(table) for table in found] == [len(cells) for cells in expected]
    for table, first_cells in zip(found, expected):
        for row, cell in zip(table, first_cells):
            if cell is not None:
                assert row[0] == cell, (row, cell)


def test_the_renderer_imports_no_tensorflow():
    code = (
        f"import sys; sys.path.insert(0, {str(BENCHMARKS_DIR)!r}); import render_docs; render_docs.render(); "
        "heavy = {'tensorflow', 'keras', 'torch'} & set(sys.modules); assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
