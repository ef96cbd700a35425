"""Full against sampled softmax for a word language model: training speed,
and what equal training time buys.

The model and tokeniser of recipes/configs/language_model_imdb.yaml (20,000
words, 1 x GRU 128, tied), trained by SGD on IMDB's training reviews. For
the full softmax and for `training.softmax_samples` = each of --samples:

* speed: training tokens per second over --windows windows of 32 x 35,
  the median of three passes; the variants take turns, pass by pass;
* quality: a fresh model trains on the stream for --seconds of wall clock,
  then the full softmax scores the first 100,000 tokens of IMDB's test
  reviews (perplexity, state carried).

Writes benchmarks/results/sampled_softmax.json and prints a table:

    python benchmarks/sampled_softmax.py [--samples 1024 2048 4096] [--seconds 90]
"""

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

from nlptool import config as config_lib
from nlptool import tasks
from nlptool.data import datasets
from nlptool.models.language_model import build_model, stream_nll, token_stream, window_dataset
from nlptool.tasks.base import Splits
from nlptool.tasks.language_model import LanguageModelConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "sampled_softmax.json"
TEST_TOKENS = 100_000


class Stopwatch(keras.callbacks.Callback):
    """Stops training after the first batch that ends past `seconds`; counts the batches."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.batches = seconds, 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def new_model(config, vocabulary_size, samples):
    """A fresh model of `config` with `samples` sampled-softmax draws (0: full), compiled as training does."""
    keras.utils.set_random_seed(config.training.seed)
    t = dataclasses.replace(config.training, softmax_samples=samples)
    model = build_model(dataclasses.replace(config, training=t), vocabulary_size)
    model.carry_states(t.batch_size)
    model.compile(optimizer=keras.optimizers.SGD(t.learning_rate, global_clipnorm=t.clip_norm), jit_compile=False)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", nargs="+", type=int, default=[1024, 2048, 4096])
    parser.add_argument("--windows", type=int, default=60, help="windows per speed pass")
    parser.add_argument("--seconds", type=float, default=90, help="training time of each quality run")
    args = parser.parse_args()
    config = config_lib.resolve(LanguageModelConfig, [ROOT / "recipes" / "configs" / "language_model_imdb.yaml"])
    t = config.training
    train = datasets.load("imdb", "train")["text"].tolist()
    # the tokeniser a language-model run learns from these lines (the validation lines play no part in it)
    tokenizer = tasks.get("language-model").prepare(config, Splits(train, train[:1]))[1].tokenizers["text"]
    stream = token_stream(tokenizer, train, "line")
    test = token_stream(tokenizer, datasets.load("imdb", "test")["text"].tolist(), "line")[:TEST_TOKENS]
    variants = [0, *args.samples]

    speed_data = window_dataset(stream[: t.batch_size * t.window * args.windows + 1], t.batch_size, t.window)
    tokens = t.batch_size * t.window * args.windows
    models = {samples: new_model(config, tokenizer.vocabulary_size(), samples) for samples in variants}
    for model in models.values():
        model.fit(speed_data.take(3), verbose=0)  # traces the step
    rates = {samples: [] for samples in variants}
    for _ in range(3):
        for samples, model in models.items():
            start = time.perf_counter()
            model.fit(speed_data, verbose=0, shuffle=False)
            rates[samples].append(tokens / (time.perf_counter() - start))

    rows = []
    for samples in variants:
        model = new_model(config, tokenizer.vocabulary_size(), samples)
        budget = Stopwatch(args.seconds)
        start = time.perf_counter()
        model.fit(window_dataset(stream, t.batch_size, t.window), callbacks=[budget], verbose=0)
        seconds = time.perf_counter() - start
        nll, count = stream_nll(model, test)
        rows.append(
            {
                "softmax_samples": samples,
                "train_tokens_per_second": round(statistics.median(rates[samples])),
                "speedup": round(statistics.median(rates[samples]) / statistics.median(rates[0]), 2),
                "quality_train_seconds": round(seconds, 1),
                "quality_train_tokens": budget.batches * t.batch_size * t.window,
                "test_perplexity": round(math.exp(nll / count), 1),
            }
        )
        print(rows[-1], flush=True)

    result = {
        "benchmark": "sampled_softmax",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": config_lib.to_dict(config),
        "speed_windows": args.windows,
        "quality_seconds": args.seconds,
        "test_tokens": int(len(test)),
        "rows": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| softmax | train tokens/s | speed-up | tokens in {args.seconds:.0f} s | IMDB test perplexity |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        name = f"sampled, {r['softmax_samples']:,}" if r["softmax_samples"] else "full"
        print(
            f"| {name} | {r['train_tokens_per_second']:,} | {r['speedup']:.2f} | "
            f"{r['quality_train_tokens']:,} | {r['test_perplexity']:.1f} |"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
