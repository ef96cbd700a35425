"""Serving speed of an exported sentiment SavedModel.

Loads the export with `tf.saved_model.load` (as a server would, without
nlptool) and measures, on SST-2 dev sentences:
- single-sentence latency: p50 and p99 over many one-sentence requests;
- batched throughput: sentences per second in batches of 256.

    python benchmarks/sentiment.py --datasets sst2      # trains runs/bench_sentiment_sst2
    nlptool export runs/bench_sentiment_sst2 runs/bench_sentiment_sst2/export
    python benchmarks/serving.py [EXPORT_DIR]           # default runs/bench_sentiment_sst2/export

Writes benchmarks/results/serving.json. Targets (issue 4): p50 <= 5 ms and
>= 2,000 sentences/s.
"""

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", nargs="?", default=str(ROOT / "runs" / "bench_sentiment_sst2" / "export"))
    parser.add_argument("--requests", type=int, default=1000, help="single-sentence requests timed")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serving.json"))
    args = parser.parse_args()
    data_dir = Path(os.environ.get("NLPTOOL_DATA_DIR", ROOT.parent / "shared" / "data"))
    sentences = pd.read_csv(data_dir / "sst2" / "dev.tsv", sep="\t", quoting=3)["sentence"].tolist()

    serve = tf.saved_model.load(args.export_dir).signatures["serving_default"]
    for sentence in sentences[:20]:  # warm-up: first calls build kernels and caches
        serve(text=tf.constant([sentence]))

    latencies = []
    for i in range(args.requests):
        request = tf.constant([sentences[i % len(sentences)]])
        start = time.perf_counter()
        serve(text=request)["label"].numpy()
        latencies.append(time.perf_counter() - start)

    batches = [tf.constant(sentences[i : i + args.batch]) for i in range(0, len(sentences), args.batch)]
    serve(text=batches[0])
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for batch in batches:
            serve(text=batch)["label"].numpy()
        rounds.append(len(sentences) / (time.perf_counter() - start))

    result = {
        "benchmark": "serving",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "export": Path(args.export_dir).name,
        "single_sentence_ms": {
            "p50": round(1e3 * float(np.percentile(latencies, 50)), 3),
            "p99": round(1e3 * float(np.percentile(latencies, 99)), 3),
            "requests": args.requests,
        },
        "batched_sentences_per_second": round(statistics.median(rounds)),
        "batch": args.batch,
        "targets_met": {
            "p50_at_most_5_ms": float(np.percentile(latencies, 50)) <= 0.005,
            "at_least_2000_sentences_per_second": statistics.median(rounds) >= 2000,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("| single sentence p50 (ms) | p99 (ms) | batched sentences/s |")
    print("|---:|---:|---:|")
    print(
        f"| {result['single_sentence_ms']['p50']:.2f} | {result['single_sentence_ms']['p99']:.2f} | "
        f"{result['batched_sentences_per_second']:,} |"
    )
    print("targets met:", result["targets_met"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
