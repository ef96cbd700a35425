"""What every peer implementation in benchmarks/peers/ shares: the wall-clock
deadline it trains to, where the data is, peak memory.

A peer module is a reimplementation, from its published description, of the
tool a user would pick instead of nlptool for one task. Each has

    NAME: str                     # what it is, for the table
    TASK: str                     # "translation", "language-model" or "sentiment"
    def run(seconds, seed, limit=None) -> dict

`run` trains for `seconds` of wall clock (a `Deadline`, checked after every
training step, so it stops mid-epoch; the per-epoch validation of the
published recipe counts in the time, as nlptool's does), then evaluates on
the test split, untimed, and returns

    {"train_seconds": float,      # the training loop's wall clock, validation included
     "epochs": float,             # epochs trained, fractional when the deadline fell mid-epoch
     "train_units": int,          # what it trained on: target tokens, tokens or examples (padding excluded)
     "quality": {name: value},    # the task's test metrics
     "config": {name: value}}     # the sizes and settings it ran with

`limit` keeps the first N training (and test) examples: for quick checks,
never for figures.
"""

import argparse
import json
import os
import resource
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Deadline:
    """`seconds` of wall clock from now."""

    def __init__(self, seconds):
        self.seconds = float(seconds)
        self.started = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.started

    def passed(self):
        return self.elapsed() >= self.seconds


def data_dir():
    """The shared datasets: $NLPTOOL_DATA_DIR, or ../shared/data beside the repository."""
    return Path(os.environ.get("NLPTOOL_DATA_DIR", HERE.parents[2] / "shared" / "data"))


def peak_rss_mib():
    """This process's peak resident memory so far, MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def command_line(run, description):
    """A peer module's command line: `--seconds`, `--seed`, `--limit`; prints
    `run`'s result with this process's peak memory as one line of JSON."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, required=True, help="training wall clock")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="the first N examples of each split (checks only)")
    args = parser.parse_args()
    result = run(args.seconds, args.seed, args.limit)
    print(json.dumps({**result, "peak_rss_mib": peak_rss_mib()}))
