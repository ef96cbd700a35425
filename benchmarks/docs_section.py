"""Writing a benchmark's table into docs/benchmarks.md, between its two markers.

Every benchmark script with a results file has `MARKERS` (start, end),
`RESULTS` (its JSON) and `table(results) -> str`; its `--render` calls
`render` here, and `benchmarks/render_docs.py` renders them all. Nothing
here imports TensorFlow.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"


def _split(content, markers, docs=DOCS):
    start, end = markers
    if start not in content or end not in content.split(start, 1)[1]:
        raise SystemExit(f"{docs} lacks the markers {start!r} ... {end!r}.")
    before, rest = content.split(start, 1)
    inside, after = rest.split(end, 1)
    return before, inside, after


def section(content, markers, docs=DOCS):
    """What lies between `markers` (start, end) in `content`, as it is."""
    return _split(content, markers, docs)[1]


def framed(text):
    """What `replace_section` puts between the markers for `text`: each marker on a line of its own."""
    return f"\n{text}\n"


def replace_section(content, markers, text, docs=DOCS):
    """`content` with what lies between `markers` (start, end) replaced by `text`."""
    before, _, after = _split(content, markers, docs)
    start, end = markers
    return f"{before}{start}{framed(text)}{end}{after}"


def write_section(markers, text, docs=DOCS):
    """Replace what lies between the `markers` (start, end) in `docs` with `text`."""
    docs = Path(docs)
    docs.write_text(replace_section(docs.read_text(), markers, text, docs))


def load_results(path, missing_ok=False):
    """The parsed results file; None when it does not exist and `missing_ok`."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise SystemExit(f"{path} does not exist: run its benchmark first.")
    return json.loads(path.read_text())


def render(markers, table, results, docs=DOCS, missing_ok=False):
    """A script's `--render`: `table` of the results file `results`, written between `markers` in `docs`."""
    text = table(load_results(results, missing_ok))
    write_section(markers, text, docs)
    return text


# === what every table says of where and when it ran ===


def day(timestamp):
    """'2026-11-22' of an ISO timestamp."""
    return timestamp[:10]


def this_machine():
    """The machine entry of a results file: CPU count, platform and Python version of this machine."""
    import os
    import platform

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def machine(described, versions=None):
    """'2 CPU cores (Linux-..., Python 3.11.7; TensorFlow 2.21.0, ...)' from a results file's machine entry."""
    described = described or {}
    cpus = described.get("cpus")
    head = f"{cpus} CPU cores" if cpus else "a machine whose CPU count was not recorded"
    details = [described[key] for key in ("platform",) if described.get(key)]
    if described.get("python"):
        details.append(f"Python {described['python']}")
    names = {"tensorflow": "TensorFlow", "keras": "Keras", "torch": "torch"}
    software = [f"{names.get(key, key)} {value}" for key, value in (versions or {}).items() if value]
    inside = ", ".join(details)
    if software:
        inside = f"{inside}; {', '.join(software)}" if inside else ", ".join(software)
    return f"{head} ({inside})" if inside else head


def targets_line(met, labels):
    """'Targets: <label>: met, <label>: not met.' from a {key: bool} of a results file."""
    if not met:
        return ""
    parts = [f"{labels.get(key, key.replace('_', ' '))}: {'met' if value else 'not met'}" for key, value in met.items()]
    return "Targets: " + "; ".join(parts) + "."


def history_column(history, name):
    """The values of column `name` of a run's history.csv, as a results file keeps it (a list of lines)."""
    header, *rows = [line.split(",") for line in history]
    return [float(row[header.index(name)]) for row in rows] if name in header else []
