"""Does a pre-trained GRU language model help the sentiment classifier?

For each sentiment dataset, trains with the same classifier configuration
(the shipped `recipes/configs/sentiment_<dataset>.yaml` with the embedding
and GRU sized `--units`, as the language model's):
1. the classifier from random weights (once per dataset);
2. for each pre-training corpus, a word-level GRU language model for
   `--lm-minutes` (checked at the end of each epoch, so the training texts
   are capped at `--lm-max-words` whitespace words: IMDB's 6 M would take
   one epoch of about half an hour): the dataset's own training texts
   (`task`) or WikiText-2 (`wikitext2`, trained once and shared by the
   datasets), tokenised as the classifier tokenises (lowercased, punctuation
   split off);
3. the classifier starting from that language model's tokeniser, embedding
   and first GRU layer (`nlptool train sentiment --init-encoder-from`).
Every classifier trains for the same epochs on the same data; the table
gives test accuracy (IMDB test, SST-2 dev) and times. Writes
benchmarks/results/transfer.json (rows keyed by dataset and corpus):

    python benchmarks/transfer.py [--datasets sst2 imdb] [--corpora task wikitext2] [--units 256]
                                  [--lm-minutes 10] [--lm-max-words 2000000]
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
from nlptool import runs, tasks
from nlptool.tasks.base import DataSource, Splits
from nlptool.tasks.language_model import LanguageModelConfig, first_words
from nlptool.tasks.sentiment import TEST_SPLITS, SentimentConfig, pretrain_language_model

ROOT = Path(__file__).resolve().parents[1]


def language_model_config(sentiment_config, units, minutes):
    return config_lib.resolve(
        LanguageModelConfig,
        [],
        [
            "tokenizer.kind=word",
            f"tokenizer.vocab_size={sentiment_config.tokenizer.vocab_size}",
            "tokenizer.lowercase=true",
            "tokenizer.split_punctuation=true",
            f"model.embedding_dim={units}",
            f"model.units={units}",
            "model.layers=1",
            "model.dropout=0.2",
            "training.epochs=20",
            f"training.max_minutes={minutes}",
            "training.lr_decay_start=2",
        ],
    )


def language_model_entry(lm_config, run_dir, train_lines, validation_lines):
    """The row entry of a language model trained into `run_dir`."""
    trained = json.loads((run_dir / "training.json").read_text())
    metrics = runs.Run.open(run_dir).evaluate(validation_lines, "validation")
    return {
        "run_dir": str(run_dir.relative_to(ROOT)),
        "config": config_lib.to_dict(lm_config),
        "train_seconds": round(trained["seconds"], 1),
        "epochs": trained["epochs"],
        "train_lines": train_lines,
        "train_tokens": trained["train_tokens"],
        "validation_perplexity": round(metrics["perplexity"], 2),
    }


def train_classifier(config, data, run_dir, init=None):
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    # the frames in memory, without the test split: training is timed alone, then evaluated
    run = runs.train(
        "sentiment", config, Splits(data.train, data.validation), run_dir, options={"init_encoder_from": init}
    )
    seconds = time.perf_counter() - start
    metrics = run.evaluate(data.test, data.test_name)
    return {"accuracy": round(metrics["accuracy"], 4), "train_seconds": round(seconds, 1)}


def run(datasets, corpora, units, minutes, max_words):
    """Yields one row per (dataset, corpus) as soon as it is measured."""
    folder = ROOT / "runs" / "bench_transfer"
    shared = {}  # (corpus, vocabulary size) -> (run_dir, row entry), for corpora other than the task's own texts
    for dataset in datasets:
        config = config_lib.resolve(
            SentimentConfig,
            [ROOT / "recipes" / "configs" / f"sentiment_{dataset}.yaml"],
            [f"model.embedding_dim={units}", f"model.units={units}"],
        )
        data = tasks.get("sentiment").read_data(DataSource(dataset=dataset), config)
        random_init = train_classifier(config, data, folder / f"{dataset}_random_init")
        for corpus_name in corpora:
            lm_config = language_model_config(config, units, minutes)
            if corpus_name == "task":
                lm_dir = folder / f"{dataset}_language_model"
                shutil.rmtree(lm_dir, ignore_errors=True)
                pretrain_language_model(lm_config, data, lm_dir, max_words)  # data.train is shuffled
                train_lines = len(first_words(data.train["text"].tolist(), max_words))
                language_model = language_model_entry(lm_config, lm_dir, train_lines, data.validation["text"].tolist())
            else:
                key = (corpus_name, config.tokenizer.vocab_size)
                if key not in shared:
                    lm_dir = folder / f"{corpus_name}_{config.tokenizer.vocab_size}_language_model"
                    shutil.rmtree(lm_dir, ignore_errors=True)
                    corpus = tasks.get("language-model").read_data(DataSource(dataset=corpus_name), lm_config)
                    corpus.train = first_words(corpus.train, max_words)
                    # without the test split, as before: the row gives the validation perplexity
                    runs.train("language-model", lm_config, Splits(corpus.train, corpus.validation), lm_dir)
                    entry = language_model_entry(lm_config, lm_dir, len(corpus.train), corpus.validation)
                    shared[key] = (lm_dir, entry)
                lm_dir, language_model = shared[key]
            lm_init = train_classifier(config, data, folder / f"{dataset}_lm_init_{corpus_name}", init=lm_dir)
            yield {
                "dataset": dataset,
                "test_split": TEST_SPLITS[dataset],
                "pretraining_corpus": corpus_name,
                "units": units,
                "language_model": language_model,
                "classifier_config": config_lib.to_dict(config),
                "random_init": random_init,
                "lm_init": lm_init,
                "gain": round(lm_init["accuracy"] - random_init["accuracy"], 4),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sst2"], choices=sorted(TEST_SPLITS))
    parser.add_argument("--corpora", nargs="+", default=["task"], choices=["task", "wikitext2"])
    parser.add_argument("--units", type=int, default=256, help="embedding and GRU size of the LM and the classifier")
    parser.add_argument("--lm-minutes", type=float, default=10.0)
    parser.add_argument("--lm-max-words", type=int, help="cap the language model's training texts (whitespace words)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer.json"))
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text())["rows"] if out.is_file() else []
    rows = {(r["dataset"], r["pretraining_corpus"]): r for r in previous}
    for row in run(args.datasets, args.corpora, args.units, args.lm_minutes, args.lm_max_words):
        rows[(row["dataset"], row["pretraining_corpus"])] = row
        result = {
            "benchmark": "transfer",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "rows": list(rows.values()),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every row: a long run keeps what it measured
    print("| dataset | LM corpus | units | LM minutes | LM val ppl | random init | LM init | gain |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        lm = r["language_model"]
        print(
            f"| {r['dataset']} ({r['test_split']}) | {r['pretraining_corpus']} | {r['units']} | "
            f"{lm['train_seconds'] / 60:.1f} | "
            f"{lm['validation_perplexity']:.1f} | {r['random_init']['accuracy']:.4f} | "
            f"{r['lm_init']['accuracy']:.4f} | {r['gain']:+.4f} |"
        )


if __name__ == "__main__":
    main()
