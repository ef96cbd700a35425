"""Tokeniser speed: tokens per second in the graph, and training time.

Each tokeniser is trained on the SST-2 training sentences (timed), then
tokenises 10,000 IMDB training reviews in batches of 256 inside a
tf.function (timed, median of repeats, interleaved). The SentencePiece model
is also run directly from Python with the `sentencepiece` library on the
same text and batches (with its default threads, and with one), as the
reference the in-graph tokeniser is measured against.

    python benchmarks/tokenizers.py [--repeats N] [--reviews N]

Needs NLPTOOL_DATA_DIR (default ../shared/data) with imdb/train.csv and
sst2/train.tsv. Writes benchmarks/results/tokenizers.json and prints a table.
"""

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd
import tensorflow as tf

from nlptool import tokenizers

BATCH = 256  # reviews per call
VOCAB = 8000  # vocabulary size for the learnt tokenisers


def load(data_dir, reviews):
    imdb = pd.read_csv(data_dir / "imdb" / "train.csv", nrows=reviews)["text"].tolist()
    sst2 = pd.read_csv(data_dir / "sst2" / "train.tsv", sep="\t", quoting=3)["sentence"].tolist()
    return imdb, sst2


def make(kind):
    if kind == "word":
        return tokenizers.WordTokenizer(max_size=VOCAB - 4)
    if kind == "char":
        return tokenizers.CharTokenizer()
    if kind == "byte":
        return tokenizers.ByteTokenizer()
    if kind == "wordpiece":
        return tokenizers.WordPieceTokenizer(vocab_size=VOCAB)
    return tokenizers.SentencePieceTokenizer(vocab_size=VOCAB)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reviews", type=int, default=10_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tokenizers.json"))
    args = parser.parse_args()
    data_dir = Path(os.environ.get("NLPTOOL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    imdb, sst2 = load(data_dir, args.reviews)
    batches = [tf.constant(imdb[i : i + BATCH]) for i in range(0, len(imdb), BATCH)]

    kinds = ["word", "char", "byte", "wordpiece", "sentencepiece"]
    trained, train_seconds, runners, token_counts = {}, {}, {}, {}
    for kind in kinds:
        start = time.perf_counter()
        trained[kind] = make(kind).train(sst2)
        train_seconds[kind] = time.perf_counter() - start
        tokenize = tf.function(trained[kind].tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
        token_counts[kind] = sum(int(tokenize(b).flat_values.shape[0]) for b in batches)

        def run(tokenize=tokenize):
            for b in batches:
                tokenize(b).flat_values.numpy()

        runners[kind] = run

    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=trained["sentencepiece"].model_proto)
    python_batches = [imdb[i : i + BATCH] for i in range(0, len(imdb), BATCH)]
    token_counts["sentencepiece (python library)"] = sum(len(ids) for ids in processor.encode(imdb))

    def run_python():
        for b in python_batches:
            processor.encode(b)

    def run_python_one_thread():
        for b in python_batches:
            processor.encode(b, num_threads=1)

    runners["sentencepiece (python library)"] = run_python
    token_counts["sentencepiece (python library, 1 thread)"] = token_counts["sentencepiece (python library)"]
    runners["sentencepiece (python library, 1 thread)"] = run_python_one_thread

    times = {name: [] for name in runners}
    for run in runners.values():
        run()  # warm-up
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    rows = []
    for name in runners:
        seconds = statistics.median(times[name])
        kind = name.split()[0]
        rows.append(
            {
                "tokenizer": name,
                "tokens": token_counts[name],
                "seconds": round(seconds, 4),
                "tokens_per_second": round(token_counts[name] / seconds),
                "train_seconds_sst2": round(train_seconds[kind], 2) if name in train_seconds else None,
                "vocabulary_size": trained[kind].vocabulary_size(),
            }
        )
    speed = {r["tokenizer"]: r["tokens_per_second"] for r in rows}
    targets_met = {
        "word_at_least_1M_tokens_per_second": speed["word"] >= 1_000_000,
        "sentencepiece_in_graph_at_least_python_batched": speed["sentencepiece"]
        >= speed["sentencepiece (python library)"],
    }
    result = {
        "benchmark": "tokenizers",
        "targets_met": targets_met,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "reviews": len(imdb),
        "batch": BATCH,
        "repeats": args.repeats,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(imdb):,} IMDB reviews in batches of {BATCH}; medians of {args.repeats}")
    print("| tokeniser | vocabulary | tokens | M tokens/s | training on SST-2 (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        train = "-" if r["train_seconds_sst2"] is None else f"{r['train_seconds_sst2']:.1f}"
        print(
            f"| {r['tokenizer']} | {r['vocabulary_size']:,} | {r['tokens']:,} | "
            f"{r['tokens_per_second'] / 1e6:.2f} | {train} |"
        )
    print("targets met:", ", ".join(f"{k}={v}" for k, v in targets_met.items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
