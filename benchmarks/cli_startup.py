"""CLI start-up: wall time and peak memory of quick `nlptool` commands, two checkouts side by side.

Each command runs in a fresh process, `--repeats` times per checkout, the
checkouts interleaved (old, new, old, new, ...) so that machine noise hits
them alike; medians of the repeats. Both checkouts run with this script's
interpreter: the child is `python -c` doing what the `nlptool` console script
does (`from nlptool.cli import main; sys.exit(main())`), with the checkout
first on PYTHONPATH (which wins over the venv's editable install; checked
once per checkout before timing). Wall time is measured from the parent
around the child's whole life (interpreter start-up included); peak memory is
the child's own ru_maxrss, from os.wait4 on its pid. A command that fails in
a checkout (e.g. `--version` where it does not exist) is recorded as not
available there and not timed.

    python benchmarks/cli_startup.py --baseline /tmp/nlptool-before [--current PATH] [--repeats N] [--out FILE]

--current defaults to the checkout holding this script. Without --baseline,
only the current checkout is measured. Writes benchmarks/results/cli_startup.json
and prints a table.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["train", "sentiment", "--help"], ["--version"]]
# what the console script (pyproject's [project.scripts] nlptool = "nlptool.cli:main") runs
ENTRY = "import sys; from nlptool.cli import main; sys.argv[0] = 'nlptool'; sys.exit(main())"
# table columns: (figure, its ratio's key, format)
COLUMNS = [("median_seconds", "seconds", "{:.2f}"), ("median_peak_rss_mb", "peak_rss", "{:.0f}")]
FIND = "import importlib.util; print(importlib.util.find_spec('nlptool').origin)"


def child_env(checkout):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def check_import(checkout):
    """The nlptool a child imports must be the checkout's, not the venv's editable install."""
    origin = subprocess.run(
        [sys.executable, "-c", FIND], env=child_env(checkout), cwd=checkout, capture_output=True, text=True, check=True
    ).stdout.strip()
    if not Path(origin).resolve().is_relative_to(checkout):
        sys.exit(f"a child run for {checkout} imports {origin}, not the checkout's nlptool")
    return origin


def run_once(checkout, args):
    """One fresh process: (wall seconds, peak RSS in MB, exit code, stderr tail)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *args], env=child_env(checkout), cwd=checkout, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    rss_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return seconds, rss_mb, code, tail[0] if tail else ""


def git_commit(checkout):
    def git(*args):
        result = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    changed = None if status is None else [line[3:] for line in status.splitlines()]
    commit = git("rev-parse", "HEAD")
    return {"commit": commit and commit.strip(), "uncommitted_changes": changed}


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="the checkout to compare against (the old code), e.g. a git worktree")
    parser.add_argument("--current", default=str(ROOT), help="the checkout measured as new (default: this one)")
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per command and checkout")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cli_startup.json"))
    args = parser.parse_args()

    checkouts = {"new": Path(args.current).resolve()}
    if args.baseline:
        checkouts = {"old": Path(args.baseline).resolve(), **checkouts}
    origins = {name: check_import(path) for name, path in checkouts.items()}

    names = [" ".join(["nlptool", *command]) for command in COMMANDS]
    available = {name: {} for name in names}
    failures = {name: {} for name in names}
    for name, command in zip(names, COMMANDS):
        for impl, path in checkouts.items():  # warm-up (page cache), and is the command there at all?
            _, _, code, tail = run_once(path, command)
            available[name][impl] = code == 0
            if code != 0:
                failures[name][impl] = {"exit_code": code, "stderr": tail}

    times = {name: {impl: [] for impl in checkouts} for name in names}
    rss = {name: {impl: [] for impl in checkouts} for name in names}
    for _ in range(args.repeats):
        for name, command in zip(names, COMMANDS):
            for impl, path in checkouts.items():
                if not available[name][impl]:
                    continue
                seconds, rss_mb, code, tail = run_once(path, command)
                if code != 0:
                    sys.exit(f"{name} failed in {path} after succeeding once (exit {code}): {tail}")
                times[name][impl].append(seconds)
                rss[name][impl].append(rss_mb)

    rows = []
    for name in names:
        row = {"command": name}
        for impl in checkouts:
            if not available[name][impl]:
                row[impl] = {"available": False, **failures[name][impl]}
                continue
            row[impl] = {
                "available": True,
                "median_seconds": round(statistics.median(times[name][impl]), 4),
                "seconds": [round(t, 4) for t in times[name][impl]],
                "median_peak_rss_mb": round(statistics.median(rss[name][impl]), 1),
                "peak_rss_mb": [round(m, 1) for m in rss[name][impl]],
            }
        both = len(checkouts) == 2 and all(available[name].values())
        row["ratio_new_over_old"] = (
            {
                "seconds": round(row["new"]["median_seconds"] / row["old"]["median_seconds"], 3),
                "peak_rss": round(row["new"]["median_peak_rss_mb"] / row["old"]["median_peak_rss_mb"], 3),
            }
            if both
            else None
        )
        rows.append(row)

    result = {
        "benchmark": "cli_startup",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"tensorflow": version("tensorflow"), "keras": version("keras")},
        "interpreter": sys.executable,
        "environment": {
            key: os.environ.get(key) for key in ["TF_CPP_MIN_LOG_LEVEL", "PYTHONDONTWRITEBYTECODE", "NLPTOOL_DATA_DIR"]
        },
        "method": "fresh `python -c` console-script equivalent per run, checkout first on PYTHONPATH; "
        "wall time from the parent, peak RSS from os.wait4",
        "repeats": args.repeats,
        "implementations": {
            impl: {"path": str(path), "imports": origins[impl], **git_commit(path)} for impl, path in checkouts.items()
        },
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"fresh processes, medians of {args.repeats}; " + ", ".join(f"{i}: {p}" for i, p in checkouts.items()))
    impls = list(checkouts)
    header = "| command | " + " | ".join(f"{i} (s)" for i in impls)
    header += " | new/old |" if len(impls) == 2 else " |"
    header += " " + " | ".join(f"{i} peak RSS (MB)" for i in impls) + (" | new/old |" if len(impls) == 2 else " |")
    print(header)
    print("|---|" + "---:|" * (2 * len(impls) + (2 if len(impls) == 2 else 0)))
    for row in rows:
        cells = [f"`{row['command']}`"]
        for key, ratio_key, unit in COLUMNS:
            for impl in impls:
                cells.append(unit.format(row[impl][key]) if row[impl]["available"] else "not available")
            if len(impls) == 2:
                ratio = row["ratio_new_over_old"]
                cells.append("-" if ratio is None else f"{ratio[ratio_key]:.2f}")
        print("| " + " | ".join(cells) + " |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
