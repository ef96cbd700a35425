"""The notebook tutorials in notebooks/: each committed .ipynb is its
jupytext source (the .py beside it) executed at full size, and each source
runs top to bottom in a fresh kernel at smoke size
(NLPTOOL_NOTEBOOK_SMOKE=1)."""

import os
import re
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.py"))
SMOKE_BANNER = "Smoke size"  # what each notebook's setup cell prints at smoke size
# a path of the machine that ran it (the notebooks name their files relative to the repository)
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:home|root|tmp|work|Users|var/folders)/")


def output_text(output):
    """What a cell output shows as text: a stream, a plain-text result or a traceback."""
    data = output.get("data", {})
    return output.get("text", "") + data.get("text/plain", "") + data.get("text/html", "")


def cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_notebook_has_both_files():
    executed = {path.stem for path in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")}
    assert SOURCES, "no notebook sources in notebooks/"
    assert executed == {path.stem for path in SOURCES}, "each notebooks/NN-*.py needs its .ipynb (make notebooks)"


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_the_committed_notebook_is_its_source_run_at_full_size(source):
    executed = jupytext.read(source.with_suffix(".ipynb"))
    assert cells(executed) == cells(jupytext.read(source)), (
        f"{source.name} and its .ipynb differ: re-run it (make notebooks NOTEBOOKS={source.name})"
    )
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    unrun = [i for i, cell in enumerate(code) if cell.get("execution_count") is None]
    assert not unrun, f"{source.with_suffix('.ipynb').name}: code cells {unrun} carry no outputs of a run"
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "cells run out of order"
    printed = "".join(output_text(output) for cell in code for output in cell.get("outputs", []))
    assert SMOKE_BANNER not in printed, f"{source.with_suffix('.ipynb').name} holds a smoke-size run"
    where = MACHINE_PATH.search(printed)
    assert not where, f"an output names a path of the machine: ...{printed[where.start() - 80 : where.end() + 80]}..."


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_the_notebook_runs_at_smoke_size(source, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPTOOL_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    # a notebook writes its runs under the repository it runs in (the folder with pyproject.toml above it):
    # here a scratch one, so that the test leaves the checkout's runs/notebooks/ alone
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    notebook = jupytext.read(source)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path / "notebooks"}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    assert SMOKE_BANNER in printed, f"{source.name} did not take the smoke size from NLPTOOL_NOTEBOOK_SMOKE"
    assert (tmp_path / "runs" / "notebooks").is_dir(), f"{source.name} wrote its runs outside the repository it ran in"
