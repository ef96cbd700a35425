"""Sentiment quality and training time with the shipped configs.

For each dataset, trains `recipes/configs/sentiment_<dataset>.yaml` from
scratch into runs/bench_sentiment_<dataset>, times the training (wall clock,
tokeniser learning included), evaluates on the test split (IMDB test, SST-2
dev) and writes benchmarks/results/sentiment.json:

    python benchmarks/sentiment.py [--datasets sst2 imdb] [--set key=value ...] [--seeds 1234 1 2]
                                   [--pretrain | --init-from RUN_DIR] [--name ROW]

With `--seeds`, the classifier trains once per training seed (its
initialisation, shuffling and dropout; the data split stays the config's)
into runs/bench_sentiment_<row>_seed<S>, and the row gives the median
accuracy, F1 and time, with each seed's figures under "seeds": one SST-2 run
moves by a point or two with the seed.
With `--init-from RUN_DIR`, the classifier fine-tunes from that sentiment
run (tokeniser and all weights; e.g. the IMDB row's run for SST-2).

With `--pretrain`, a word-level GRU language model
(`recipes/configs/language_model_<dataset>.yaml`, `--pretrain-set` overrides)
first trains on the classifier's training texts (`--pretrain-words N`: their
first N words only; `--pretrain-also DATASET`: with another registered
dataset's training texts), and the classifier starts from its tokeniser,
embedding and forward GRU (`--init-encoder-from`). No labels and no test
split are read. The row's training time is the sum of both stages; the
language model's validation perplexity is measured afterwards, untimed.

Targets (issue 4): IMDB test accuracy >= 90 % trained in <= 30 minutes on
this 2-core CPU; SST-2 dev accuracy >= 87 %.
"""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from nlptool import config as config_lib
from nlptool import runs, tasks, training
from nlptool.tasks.base import DataSource, Splits
from nlptool.tasks.language_model import LanguageModelConfig
from nlptool.tasks.sentiment import TEST_SPLITS, SentimentConfig, pretrain_language_model

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"imdb": {"accuracy": 0.90, "train_seconds": 1800}, "sst2": {"accuracy": 0.87}}


def pretrain_stage(dataset, data, run_dir, max_words, overrides, also):
    """A language model on the first `max_words` words of the training texts (all with None)."""
    config = config_lib.resolve(
        LanguageModelConfig, [ROOT / "recipes" / "configs" / f"language_model_{dataset}.yaml"], overrides
    )
    pretrain_language_model(config, data, run_dir, max_words, also=also)  # data.train is shuffled


def pretraining_row(data, run_dir, max_words, also):
    """The language model's row entry (evaluated outside the timed stages)."""
    trained = json.loads((run_dir / "training.json").read_text())
    metrics = runs.Run.open(run_dir).evaluate(data.validation["text"].tolist(), "validation")
    return {
        "config": config_lib.to_dict(config_lib.resolve(LanguageModelConfig, [run_dir / runs.CONFIG_FILE])),
        "also": list(also),  # datasets whose training texts joined the classifier's
        "max_words": max_words,
        "train_tokens": trained["train_tokens"],
        "train_seconds": round(trained["seconds"], 1),
        "epochs": trained["epochs"],
        "validation_perplexity": round(metrics["perplexity"], 2),
    }


def run(
    dataset,
    overrides,
    seeds=(),
    pretrain=False,
    pretrain_words=None,
    pretrain_overrides=(),
    pretrain_also=(),
    init_from=None,
    name=None,
):
    """One row: the classifier trained once per training seed (the config's
    seed when `seeds` is empty) on one data split (the config's seed's),
    after the language model when `pretrain`, or fine-tuned from the
    sentiment run `init_from`; accuracy, F1 and time are the medians over
    the seeds, each seed's figures are kept in `seeds`. `name` names the
    row and its run directories (default: from the dataset and options)."""
    config = config_lib.resolve(
        SentimentConfig, [ROOT / "recipes" / "configs" / f"sentiment_{dataset}.yaml"], overrides
    )
    seeds = list(seeds) or [config.training.seed]
    if name is None:
        name = f"{dataset}_from_{Path(init_from).name}" if init_from else dataset
        name = f"{dataset}_pretrained" if pretrain else name
    base, lm_dir = ROOT / "runs" / f"bench_sentiment_{name}", ROOT / "runs" / f"bench_sentiment_{name}_lm"
    run_dirs = [base] if len(seeds) == 1 else [base.with_name(f"{base.name}_seed{seed}") for seed in seeds]
    for path in (*run_dirs, lm_dir):
        shutil.rmtree(path, ignore_errors=True)  # from scratch, not resumed
    task = tasks.get("sentiment")
    data = task.read_data(DataSource(dataset=dataset), config)  # the split of the config's seed, for every seed
    start = time.perf_counter()
    if pretrain:
        pretrain_stage(dataset, data, lm_dir, pretrain_words, pretrain_overrides, pretrain_also)
    pretrain_seconds = time.perf_counter() - start
    per_seed = []
    for seed, run_dir in zip(seeds, run_dirs):
        seeded = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed))
        start = time.perf_counter()
        options = {"init_from": init_from, "init_encoder_from": lm_dir if pretrain else None}
        # the frames in memory, without the test split: training is timed alone, then evaluated
        run = runs.train(task, seeded, Splits(data.train, data.validation), run_dir, options=options)
        seconds = pretrain_seconds + time.perf_counter() - start  # both stages
        metrics = run.evaluate(data.test, data.test_name)
        per_seed.append(
            {
                "seed": seed,
                "accuracy": round(metrics["accuracy"], 4),
                "macro_f1": round(metrics["macro_f1"], 4),
                "train_seconds": round(seconds, 1),
                "epochs_run": training.epochs_run(run_dir),
                "run_dir": str(run_dir.relative_to(ROOT)),
            }
        )
    accuracy, seconds = (statistics.median(r[key] for r in per_seed) for key in ("accuracy", "train_seconds"))
    target = TARGETS[dataset]
    met = accuracy >= target["accuracy"] and seconds <= target.get("train_seconds", float("inf"))
    return {
        "name": name,
        "dataset": dataset,
        "test_split": TEST_SPLITS[dataset],
        # as the first run resolved it: a language model or an earlier run decides the model's shape
        "config": config_lib.to_dict(config_lib.resolve(SentimentConfig, [run_dirs[0] / runs.CONFIG_FILE])),
        "pretraining": pretraining_row(data, lm_dir, pretrain_words, pretrain_also) if pretrain else None,
        "init_from": os.path.relpath(Path(init_from).resolve(), ROOT) if init_from else None,
        "train_examples": len(data.train),
        "train_seconds": round(seconds, 1),
        "epochs_run": statistics.median_low(r["epochs_run"] for r in per_seed),
        "accuracy": round(accuracy, 4),
        "macro_f1": round(statistics.median(r["macro_f1"] for r in per_seed), 4),
        "seeds": per_seed,
        "target": target,
        "target_met": met,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2", "imdb"], choices=sorted(TARGETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--pretrain", action="store_true", help="start from a language model on the training texts")
    parser.add_argument("--pretrain-words", type=int, help="cut the training texts to this many words (default: all)")
    parser.add_argument("--pretrain-also", nargs="+", default=[], metavar="DATASET", help="more texts for it")
    parser.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE", help="LM override")
    parser.add_argument("--seeds", nargs="+", type=int, default=[], help="training seeds; the row gives medians")
    parser.add_argument("--init-from", metavar="RUN_DIR", help="fine-tune from this sentiment run (e.g. IMDB's)")
    parser.add_argument("--name", help="the row's name and run directories' (default: from the dataset and options)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sentiment.json"))
    args = parser.parse_args()
    if args.pretrain and args.init_from:
        parser.error("--pretrain and --init-from are two ways to start the classifier; pass one")
    if args.name and len(args.datasets) > 1:
        parser.error("--name names one row; pass one dataset with it")
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    by_name = {row["name"]: row for row in previous}  # a run keeps the other rows
    for dataset in args.datasets:
        row = run(
            dataset,
            args.set,
            seeds=args.seeds,
            pretrain=args.pretrain,
            pretrain_words=args.pretrain_words,
            pretrain_overrides=args.pretrain_set,
            pretrain_also=args.pretrain_also,
            init_from=args.init_from,
            name=args.name,
        )
        row["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        by_name[row["name"]] = row
    rows = list(by_name.values())
    result = {
        "benchmark": "sentiment",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| run | test split | accuracy | macro F1 | training (s) | epochs | target met |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['test_split']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | "
            f"{r['train_seconds']:.0f} | {r['epochs_run']} | {r['target_met']} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
