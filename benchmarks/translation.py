"""Translation quality and speed with the shipped configs.

For each corpus, trains `recipes/configs/translation_<corpus>.yaml` from
scratch into runs/bench_translation_<corpus> (the config's
`training.max_minutes` bounds the training time), evaluates on the test
split (sacreBLEU and chrF with beam search and greedy, perplexity), exports
the SavedModel and times it, and writes benchmarks/results/translation.json
(rows of corpora run earlier are kept):

    python benchmarks/translation.py [--corpora multi30k spa_eng] [--set key=value ...]

`--reuse-run` keeps a finished run of an earlier call (its training and
metrics.json) and measures the export again.

Targets (issue 6): Multi30k German -> English, test_2016_flickr, sacreBLEU
>= 30 with beam search after <= 60 minutes of training on this 2-core CPU;
exported model latency p50 <= 100 ms for one sentence with beam 5.

Latency: one test sentence per call of the exported SavedModel (loaded with
tf.saved_model.load, as a server would), over LATENCY_SENTENCES sentences
after a warm-up; p50 and p99 of the per-call times. Throughput: sentences
per second for batches of THROUGHPUT_BATCH test sentences, median of the
batches.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import runs, tasks
from nlptool.tasks.base import DataSource

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"multi30k": "multi30k", "spa_eng": "spa_eng"}
TARGETS = {"multi30k": {"bleu": 30.0, "train_seconds": 3600, "latency_p50_ms_beam5": 100.0}}
LATENCY_SENTENCES = 100
THROUGHPUT_BATCH = 64
SAMPLES = 5
TASK = tasks.get("translation")


def latency(call, sentences):
    """(p50, p99) milliseconds of `call` on one sentence at a time."""
    call(tf.constant(sentences[:1]))  # warm-up
    times = []
    for sentence in sentences:
        start = time.perf_counter()
        call(tf.constant([sentence]))["text"].numpy()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def throughput(call, sentences):
    """Median sentences per second over batches of THROUGHPUT_BATCH sentences."""
    batches = [sentences[i : i + THROUGHPUT_BATCH] for i in range(0, len(sentences), THROUGHPUT_BATCH)]
    batches = [b for b in batches if len(b) == THROUGHPUT_BATCH][:5]
    call(tf.constant(batches[0]))
    rates = []
    for batch in batches:
        start = time.perf_counter()
        call(tf.constant(batch))["text"].numpy()
        rates.append(len(batch) / (time.perf_counter() - start))
    return statistics.median(rates)


def serving_speed(export_dir, sentences):
    module = tf.saved_model.load(str(export_dir))
    beam = module.signatures["beam_search"]

    def beam5(source):
        return beam(
            source=source,
            beam_width=tf.constant(5),
            n_best=tf.constant(1),
            length_penalty=tf.constant(0.6),
        )

    def greedy(source):
        return module.signatures["greedy"](source=source)

    speed = {}
    for name, call in (("greedy", greedy), ("beam5", beam5)):
        p50, p99 = latency(call, sentences[:LATENCY_SENTENCES])
        speed[name] = {
            "latency_p50_ms": round(p50, 1),
            "latency_p99_ms": round(p99, 1),
            "batch_sentences_per_second": round(throughput(call, sentences), 1),
        }
    return speed


def run(corpus_name, overrides, max_train_pairs=None, reuse_run=False):
    config = config_lib.resolve(
        TASK.config_class, [ROOT / "recipes" / "configs" / f"translation_{corpus_name}.yaml"], overrides
    )
    run_dir = ROOT / "runs" / f"bench_translation_{corpus_name}"
    source = DataSource(dataset=DATASETS[corpus_name], max_train_examples=max_train_pairs)
    corpus = TASK.read_data(source, config)
    if reuse_run:
        config = runs.Run.open(run_dir).config
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:
        shutil.rmtree(run_dir, ignore_errors=True)  # from scratch, not resumed
        metrics = runs.train(TASK, config, source, run_dir).metrics  # evaluated on the test split
    trained = json.loads((run_dir / "training.json").read_text())
    export_dir = runs.Run.open(run_dir).export(run_dir / "export", overwrite=True)
    sources = corpus.test["source"].tolist()
    translations = runs.load(export_dir).predict(sources[:SAMPLES])
    row = {
        "corpus": corpus_name,
        "pair": f"{config.source_lang}-{config.target_lang}",
        "config": config_lib.to_dict(config),
        "train_pairs": len(corpus.train),
        "train_seconds": round(trained["seconds"], 1),
        "epochs_run": trained["epochs"],
        "train_target_tokens_per_second": round(
            trained["target_tokens_per_epoch"] * trained["epochs"] / trained["seconds"]
        ),
        "test_pairs": metrics["pairs"],
        "test_perplexity": round(metrics["perplexity"], 2),
        "bleu_beam": round(metrics["beam"]["bleu"], 2),
        "chrf_beam": round(metrics["beam"]["chrf"], 2),
        "bleu_greedy": round(metrics["greedy"]["bleu"], 2),
        "chrf_greedy": round(metrics["greedy"]["chrf"], 2),
        "bleu_signature": metrics["beam"]["bleu_signature"],
        "history": (run_dir / "history.csv").read_text().splitlines(),
        "serving": serving_speed(export_dir, sources),
        "samples": [
            {"source": s, "reference": r, "translation": t["text"]}
            for s, r, t in zip(sources, corpus.test["target"].tolist(), translations)
        ],
    }
    if corpus_name in TARGETS:
        target = TARGETS[corpus_name]
        row["target"] = target
        row["target_met"] = (
            row["bleu_beam"] >= target["bleu"]
            and trained["seconds"] <= target["train_seconds"]
            and row["serving"]["beam5"]["latency_p50_ms"] <= target["latency_p50_ms_beam5"]
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=["multi30k"], choices=sorted(DATASETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-train-pairs", type=int, help="train on the first N training pairs")
    parser.add_argument("--reuse-run", action="store_true", help="keep the finished run; measure its export again")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "translation.json"))
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = {row["corpus"]: row for row in previous}
    for name in args.corpora:
        rows[name] = run(name, args.set, args.max_train_pairs, args.reuse_run)
        rows[name]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = {
        "benchmark": "translation",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": list(rows.values()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        "| corpus | pair | BLEU beam / greedy | chrF beam / greedy | test ppl | training (min) | epochs "
        "| train tgt tok/s | p50 / p99 ms greedy | p50 / p99 ms beam 5 | sent/s greedy / beam 5 (batch 64) |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---|---|---|")
    for r in result["rows"]:
        g, b = r["serving"]["greedy"], r["serving"]["beam5"]
        print(
            f"| {r['corpus']} | {r['pair']} | {r['bleu_beam']:.1f} / {r['bleu_greedy']:.1f} | "
            f"{r['chrf_beam']:.1f} / {r['chrf_greedy']:.1f} | {r['test_perplexity']:.1f} | "
            f"{r['train_seconds'] / 60:.1f} | {r['epochs_run']} | {r['train_target_tokens_per_second']:,} | "
            f"{g['latency_p50_ms']} / {g['latency_p99_ms']} | {b['latency_p50_ms']} / {b['latency_p99_ms']} | "
            f"{g['batch_sentences_per_second']} / {b['batch_sentences_per_second']} |"
        )


if __name__ == "__main__":
    main()
