"""Language-model quality and speed with the shipped configs.

For each corpus, trains `recipes/configs/language_model_<corpus>.yaml` from
scratch into runs/bench_lm_<corpus> (the config's `training.max_minutes`
bounds the training time), evaluates on the test split, measures training
and generation throughput, and writes benchmarks/results/language_model.json
(rows of corpora run earlier are kept):

    python benchmarks/language_model.py [--corpora ptb wikitext2 tiny_shakespeare] [--set key=value ...]

Targets (issue 5): PTB word-level test perplexity <= 105 with <= 60 minutes
of training on this 2-core CPU. WikiText-2 perplexity and Tiny Shakespeare
bits per character are reported with their training time.

Generation speed: new tokens per second of the run's generation module
(sampling at temperature 1, no stop token) for one prompt and for 32, median
of 5 timed calls after a warm-up.
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

import tensorflow as tf

from nlptool import config as config_lib
from nlptool import runs, tasks
from nlptool.models.language_model_serving import LanguageModelServing
from nlptool.tasks.base import DataSource
from nlptool.tasks.language_model import LanguageModelConfig

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"ptb": {"perplexity": 105.0, "train_seconds": 3600}}
PROMPTS = {
    "ptb": ["the company said", "in new york stock exchange trading", "the federal reserve"],
    "wikitext2": ["The game", "In 1998 , the", "The song was"],
    "tiny_shakespeare": ["ROMEO:\n", "First Citizen:\n", "KING HENRY:\n"],
}
GENERATION_TOKENS = 64


def generation_speed(module, batch):
    """New tokens per second of `module.generate` for `batch` prompts."""
    prompts = tf.constant(["the"] * batch)
    args = dict(
        max_new_tokens=tf.constant(GENERATION_TOKENS),
        temperature=tf.constant(1.0),
        top_k=tf.constant(0),
        top_p=tf.constant(1.0),
        seed=tf.constant(1, tf.int64),
    )
    module.generate(prompts, **args)  # trace and warm up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        module.generate(prompts, **args)["ids"].numpy()
        times.append(time.perf_counter() - start)
    return batch * GENERATION_TOKENS / statistics.median(times)


def run(corpus_name, overrides, max_train_lines=None):
    config = config_lib.resolve(
        LanguageModelConfig, [ROOT / "recipes" / "configs" / f"language_model_{corpus_name}.yaml"], overrides
    )
    run_dir = ROOT / "runs" / f"bench_lm_{corpus_name}"
    shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, not resumed
    task = tasks.get("language-model")
    splits = task.read_data(DataSource(dataset=corpus_name, max_train_examples=max_train_lines), config)
    run = runs.train(task, config, splits, run_dir)  # evaluates the test split: run.metrics
    trained = json.loads((run_dir / runs.TRAINING_FILE).read_text())
    metrics = run.metrics
    history = (run_dir / "history.csv").read_text().splitlines()
    loaded = run.load()
    tokenizer, model = loaded.preprocessing.tokenizers["text"], loaded.model
    # every row runs the full length: no stop at </s>
    module = LanguageModelServing(tokenizer, model, dataclasses.replace(config.generation, stop_at_end=False))
    samples = [row["text"] for row in run.predict(PROMPTS[corpus_name], seed=7)]
    row = {
        "corpus": corpus_name,
        "config": config_lib.to_dict(config),
        "train_lines": len(splits.train),
        "train_tokens": trained["train_tokens"],
        "train_seconds": round(trained["seconds"], 1),
        "epochs_run": trained["epochs"],
        "train_tokens_per_second": round(trained["train_tokens"] * trained["epochs"] / trained["seconds"]),
        "test_tokens": metrics["tokens"],
        "test_perplexity": round(metrics["perplexity"], 2),
        "history": history,
        "generation_tokens_per_second": {
            "batch_1": round(generation_speed(module, 1)),
            "batch_32": round(generation_speed(module, 32)),
        },
        "samples": dict(zip(PROMPTS[corpus_name], samples)),
    }
    for key in ("bits_per_character", "word_perplexity"):
        if key in metrics:
            row[f"test_{key}"] = round(metrics[key], 4)
    if corpus_name in TARGETS:
        target = TARGETS[corpus_name]
        row["target"] = target
        row["target_met"] = (
            metrics["perplexity"] <= target["perplexity"] and trained["seconds"] <= target["train_seconds"]
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=["ptb"], choices=sorted(PROMPTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-train-lines", type=int, help="train on the first N lines of the training split")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "language_model.json"))
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = {row["corpus"]: row for row in previous}
    for name in args.corpora:
        rows[name] = run(name, args.set, args.max_train_lines)
        rows[name]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = {
        "benchmark": "language_model",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": list(rows.values()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| corpus | test perplexity | bits/char | training (min) | epochs | train tok/s | gen tok/s b1 / b32 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in result["rows"]:
        bpc = r.get("test_bits_per_character")
        gen = r["generation_tokens_per_second"]
        print(
            f"| {r['corpus']} | {r['test_perplexity']:.1f} | {'' if bpc is None else f'{bpc:.3f}'} | "
            f"{r['train_seconds'] / 60:.1f} | {r['epochs_run']} | {r['train_tokens_per_second']:,} | "
            f"{gen['batch_1']:,} / {gen['batch_32']:,} |"
        )


if __name__ == "__main__":
    main()
