"""Does a pre-trained GRU language model help the sentiment classifier?

For each sentiment dataset, trains three things with the same classifier
configuration (the shipped `recipes/configs/sentiment_<dataset>.yaml` with
the embedding and GRU sized as the language model's):
1. a word-level GRU language model on a corpus, for `--lm-minutes`: the
   dataset's own training texts (`--corpus task`) or WikiText-2
   (`--corpus wikitext2`), tokenised as the classifier tokenises (lowercased,
   punctuation split off);
2. the classifier from random weights;
3. the classifier starting from the language model's tokeniser, embedding
   and first GRU layer (`nlptool train sentiment --init-encoder-from`).
Both classifiers train for the same epochs on the same data; the table
gives test accuracy (IMDB test, SST-2 dev) and times. Writes
benchmarks/results/transfer.json:

    python benchmarks/transfer.py [--datasets sst2 imdb] [--corpus task|wikitext2] [--lm-minutes 10]
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
from nlptool.tasks import language_model_steps as lm_steps
from nlptool.tasks import sentiment_steps
from nlptool.tasks.language_model import LanguageModelConfig
from nlptool.tasks.sentiment import SentimentConfig

ROOT = Path(__file__).resolve().parents[1]
UNITS = 256


def language_model_config(sentiment_config, minutes):
    return config_lib.resolve(
        LanguageModelConfig,
        [],
        [
            "tokenizer.kind=word",
            f"tokenizer.vocab_size={sentiment_config.tokenizer.vocab_size}",
            "tokenizer.lowercase=true",
            "tokenizer.split_punctuation=true",
            f"model.embedding_dim={UNITS}",
            f"model.units={UNITS}",
            "model.layers=1",
            "model.dropout=0.2",
            "training.epochs=20",
            f"training.max_minutes={minutes}",
            "training.lr_decay_start=2",
        ],
    )


def run(dataset, corpus_name, minutes):
    config = config_lib.resolve(
        SentimentConfig,
        [ROOT / "recipes" / "configs" / f"sentiment_{dataset}.yaml"],
        [f"model.embedding_dim={UNITS}", f"model.units={UNITS}"],
    )
    data = sentiment_steps.dataset_data(dataset, config.training.seed, config.training.validation_fraction)
    runs = ROOT / "runs" / f"bench_transfer_{dataset}_{corpus_name}"
    shutil.rmtree(runs, ignore_errors=True)

    # 1. the language model
    if corpus_name == "task":
        corpus = lm_steps.Corpus(data.train["text"].tolist(), data.validation["text"].tolist(), None)
    else:
        corpus = lm_steps.dataset_corpus(corpus_name)
    lm_config = language_model_config(config, minutes)
    lm_steps.train(lm_config, corpus, runs / "language_model")
    lm_trained = json.loads((runs / "language_model" / "training.json").read_text())
    lm_metrics = lm_steps.evaluate(runs / "language_model", corpus.validation, "validation")

    # 2. and 3. the classifiers
    arms = {}
    for arm, init in (("random_init", None), ("lm_init", runs / "language_model")):
        start = time.perf_counter()
        sentiment_steps.train(config, data, runs / arm, init_encoder_from=init)
        seconds = time.perf_counter() - start
        metrics = sentiment_steps.evaluate(runs / arm, data.test)
        arms[arm] = {"accuracy": round(metrics["accuracy"], 4), "train_seconds": round(seconds, 1)}
    return {
        "dataset": dataset,
        "test_split": sentiment_steps.TEST_SPLITS[dataset],
        "pretraining_corpus": corpus_name,
        "language_model": {
            "config": config_lib.to_dict(lm_config),
            "train_seconds": round(lm_trained["seconds"], 1),
            "epochs": lm_trained["epochs"],
            "train_tokens": lm_trained["train_tokens"],
            "validation_perplexity": round(lm_metrics["perplexity"], 2),
        },
        "classifier_config": config_lib.to_dict(config),
        **arms,
        "gain": round(arms["lm_init"]["accuracy"] - arms["random_init"]["accuracy"], 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2"], choices=sorted(sentiment_steps.TEST_SPLITS))
    parser.add_argument("--corpus", default="task", choices=["task", "wikitext2"])
    parser.add_argument("--lm-minutes", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer.json"))
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = {(r["dataset"], r["pretraining_corpus"]): r for r in previous}
    for dataset in args.datasets:
        row = run(dataset, args.corpus, args.lm_minutes)
        row["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rows[(dataset, args.corpus)] = row
    result = {
        "benchmark": "transfer",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": list(rows.values()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| dataset | LM corpus | LM minutes | LM val ppl | random init | LM init | gain |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        lm = r["language_model"]
        print(
            f"| {r['dataset']} ({r['test_split']}) | {r['pretraining_corpus']} | {lm['train_seconds'] / 60:.1f} | "
            f"{lm['validation_perplexity']:.1f} | {r['random_init']['accuracy']:.4f} | "
            f"{r['lm_init']['accuracy']:.4f} | {r['gain']:+.4f} |"
        )


if __name__ == "__main__":
    main()
