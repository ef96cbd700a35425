"""Regenerate every generated section of docs/benchmarks.md from benchmarks/results/*.json.

Each benchmark script in BENCHMARKS has `MARKERS`, `RESULTS` and
`table(results)` (what its own `--render` writes); this renders them all,
without TensorFlow and without running a benchmark:

    python benchmarks/render_docs.py            # rewrite the generated sections
    python benchmarks/render_docs.py --check    # exit 1, naming the stale sections, if the file is not up to date
"""

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the scripts import docs_section as a sibling

import docs_section

BENCHMARKS = (
    "gru",
    "tokenizers",
    "sentiment",
    "language_model",
    "lm_optimizers",
    "sampled_softmax",
    "translation",
    "transfer",
    "small_data",
    "fine_tuning",
    "peers",
    "summarization",
    "serving",
    "distributed",
    "cli_startup",
    "fuzz",
)


def load(name):
    """The script benchmarks/<name>.py as a module, under a name of its own (benchmarks/tokenizers.py is not
    the `tokenizers` package)."""
    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(names=BENCHMARKS):
    """(name, markers, text) of each benchmark's generated section, from its results file."""
    for name in names:
        module = load(name)
        results = docs_section.load_results(module.RESULTS, missing_ok=getattr(module, "RESULTS_OPTIONAL", False))
        yield name, module.MARKERS, module.table(results)


def render(docs=docs_section.DOCS):
    """(what docs/benchmarks.md should hold, the names of the sections that differ from what it holds)."""
    docs = Path(docs)
    content = docs.read_text()
    rendered, stale = content, []
    for name, markers, text in sections():
        if docs_section.section(content, markers, docs) != docs_section.framed(text):
            stale.append(name)
        rendered = docs_section.replace_section(rendered, markers, text, docs)
    return rendered, stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any section is stale")
    parser.add_argument("--docs", type=Path, default=docs_section.DOCS, help="the file (default: %(default)s)")
    args = parser.parse_args(argv)
    rendered, stale = render(args.docs)
    if args.check:
        if stale:
            print(
                f"{args.docs}: stale sections: {', '.join(stale)} (python benchmarks/render_docs.py rewrites them)",
                file=sys.stderr,
            )
            return 1
        print(f"{args.docs}: all {len(BENCHMARKS)} generated sections are up to date")
        return 0
    if stale:
        args.docs.write_text(rendered)
    print(f"{args.docs}: rewrote {', '.join(stale) if stale else 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
