"""Writing a benchmark's table into docs/benchmarks.md, between its two markers."""

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(markers, text, docs=DOCS):
    """Replace what lies between the `markers` (start, end) in `docs` with `text`."""
    start, end = markers
    content = docs.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{docs} lacks the markers {start!r} ... {end!r}.")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    docs.write_text(f"{before}{start}\n{text}\n{end}{after}")
