"""Sentiment quality and training time with the shipped configs.

For each dataset, trains `recipes/configs/sentiment_<dataset>.yaml` from
scratch into runs/bench_sentiment_<dataset>, times the training (wall clock,
tokeniser learning included), evaluates on the test split (IMDB test, SST-2
dev) and writes benchmarks/results/sentiment.json:

    python benchmarks/sentiment.py [--datasets sst2 imdb] [--set key=value ...]

Targets (issue 4): IMDB test accuracy >= 90 % trained in <= 30 minutes on
this 2-core CPU; SST-2 dev accuracy >= 87 %.
"""

import argparse
import json
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from nlptool import config as config_lib
from nlptool.tasks import sentiment_steps as steps
from nlptool.tasks.sentiment import SentimentConfig

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"imdb": {"accuracy": 0.90, "train_seconds": 1800}, "sst2": {"accuracy": 0.87}}


def run(dataset, overrides):
    config = config_lib.resolve(
        SentimentConfig, [ROOT / "recipes" / "configs" / f"sentiment_{dataset}.yaml"], overrides
    )
    run_dir = ROOT / "runs" / f"bench_sentiment_{dataset}"
    shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, not resumed
    data = steps.dataset_data(dataset, config.training.seed, config.training.validation_fraction)
    start = time.perf_counter()
    steps.train(config, data, run_dir)
    seconds = time.perf_counter() - start
    metrics = steps.evaluate(run_dir, data.test)
    target = TARGETS[dataset]
    met = metrics["accuracy"] >= target["accuracy"] and seconds <= target.get("train_seconds", float("inf"))
    return {
        "dataset": dataset,
        "test_split": steps.TEST_SPLITS[dataset],
        "config": config_lib.to_dict(config),
        "train_examples": len(data.train),
        "train_seconds": round(seconds, 1),
        "epochs_run": len(open(run_dir / "history.csv").read().splitlines()) - 1,
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "target": target,
        "target_met": met,
        "run_dir": str(run_dir.relative_to(ROOT)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2", "imdb"], choices=sorted(TARGETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sentiment.json"))
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    by_dataset = {row["dataset"]: row for row in previous}  # a run of some datasets keeps the others' rows
    for dataset in args.datasets:
        by_dataset[dataset] = run(dataset, args.set)
        by_dataset[dataset]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = list(by_dataset.values())
    result = {
        "benchmark": "sentiment",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| dataset | test split | accuracy | macro F1 | training (s) | epochs | target met |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['test_split']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
            f"{r['train_seconds']:.0f} | {r['epochs_run']} | {r['target_met']} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
