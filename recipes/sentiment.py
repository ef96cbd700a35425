"""
# Sentiment analysis with a bidirectional GRU

Raw sentences in, a SavedModel that answers raw strings out:

    python recipes/sentiment.py                                   # SST-2 (the shipped config sst2)
    python recipes/sentiment.py --init-from preset:english-small  # fine-tune the pre-trained preset
    python recipes/sentiment.py --dataset imdb --config imdb
    python recipes/sentiment.py --csv reviews.csv --text-column review --label-column stars
    python recipes/sentiment.py --dataset imdb --pretrain imdb

This script and `nlptool train sentiment` run the same flow (the task
`nlptool.tasks.get("sentiment")` through `nlptool.runs`: `runs.train`,
`Run.evaluate`, `Run.export`, `runs.load(...).predict`); read it top to
bottom to see it. Data come from NLPTOOL_DATA_DIR (or are downloaded).
Without SST-2 and without a network, the script says so and trains on the
small hand-written sample `data/sample_sentiment.csv`, which shows the
mechanics, not accuracy.
"""

import argparse
import time
from pathlib import Path

from nlptool import config as config_lib
from nlptool import configs, runs, tasks
from nlptool.data import DatasetError
from nlptool.tasks.base import DataSource
from nlptool.tasks.language_model import LanguageModelConfig
from nlptool.tasks.sentiment import pretrain_language_model

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU sentiment classifier.")
parser.add_argument("--dataset", default="sst2", help="registered dataset (imdb, sst2) unless --csv is given")
parser.add_argument("--csv", help="your CSV (or TSV, JSON Lines) instead of a registered dataset")
parser.add_argument("--text-column", default="text")
parser.add_argument("--label-column", default="label")
parser.add_argument("--config", action="append", help="shipped configs by name, or YAML files; several merge")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--max-train-examples", type=int, help="train on the first N examples only")
parser.add_argument("--run-dir", help="default: runs/sentiment_<dataset>")
parser.add_argument("--overwrite", action="store_true", help="start afresh in run directories that hold a run")
parser.add_argument(
    "--init-from", metavar="preset:NAME|RUN_DIR", help="start from a preset (`nlptool presets`) or an earlier run"
)
parser.add_argument("--pretrain", metavar="LM_CONFIG", help="first train this language model on the training texts")
parser.add_argument("--pretrain-words", type=int, help="words of training text it reads (default: all)")
parser.add_argument("--pretrain-also", nargs="+", default=[], metavar="DATASET", help="more training texts for it")
args = parser.parse_args()

"""
## Configuration

Defaults of `SentimentConfig`, then the YAML files, then `--set` overrides.
The resolved configuration is written to RUN_DIR/config.yaml.
"""

task = tasks.get("sentiment")
config_files = [configs.find(choice, task.name) for choice in args.config or [args.dataset]]
config = config_lib.resolve(task.config_class, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/sentiment_{Path(args.csv).stem if args.csv else args.dataset}")

"""
## Data

Where the data come from (a `DataSource`: a registered dataset, or your file
and its columns), read into train, validation (a stratified share of the
training data; for SST-2, of its whole sentences, whose phrases then leave
training) and test frames of (text, label). The run records the source in
RUN_DIR/run.json, so `nlptool evaluate RUN_DIR` finds the test data again.
"""

if args.csv:
    columns = {"text": args.text_column, "label": args.label_column}
    source = DataSource(train_file=args.csv, columns=columns, max_train_examples=args.max_train_examples)
else:
    source = DataSource(dataset=args.dataset, max_train_examples=args.max_train_examples)
sample = None
try:
    splits = task.read_data(source, config)
except DatasetError as error:
    sample = HERE.parent / "data" / "sample_sentiment.csv"
    print(f"{error}\nUsing the small sample {sample.name} instead.")
    config = config_lib.resolve(
        task.config_class,
        [],
        ["training.epochs=30", "training.validation_fraction=0.25", "model.units=16", "tokenizer.vocab_size=500"],
    )
    source = DataSource(train_file=sample, columns={"text": "text", "label": "label"})
    splits = task.read_data(source, config)

"""
## Start from a preset (optional)

With `--init-from preset:english-small`, the classifier starts from a GRU
language model pre-trained on about eight million words of English (`nlptool
presets` lists them): it takes the preset's tokeniser, embedding and GRU (in
its forward direction), and with them the preset's sizes. On SST-2 this is
worth a few points of accuracy over random weights at no extra training
time (docs/benchmarks.md, small data). `--init-from RUN_DIR` starts from an
earlier sentiment run instead (fine-tuning on new data).

## Pre-train (optional)

With `--pretrain`, a word-level GRU language model first learns to predict
the next word of the training texts (all of them, or their first
`--pretrain-words` words; no labels), and the classifier starts from its
tokeniser, embedding and forward GRU. `--pretrain-also DATASET` adds the
training texts of other registered datasets, never a test split. On IMDB
this takes the test accuracy from 0.876 to 0.901 (median of three
classifier seeds) in 21 minutes (README, Benchmarks). The language model
goes to RUN_DIR_language_model.
"""

start = time.perf_counter()
options = {}
if args.init_from and args.pretrain:
    parser.error("start from a preset or run (--init-from) or from a new language model (--pretrain), not both")
if args.init_from:
    options["init_from"] = args.init_from  # as `--init-from` on the command line
if args.pretrain:
    lm_config = config_lib.resolve(LanguageModelConfig, [configs.find(args.pretrain, "language-model")])
    language_model = run_dir.with_name(run_dir.name + "_language_model")
    pretrain_language_model(
        lm_config, splits, language_model, args.pretrain_words, also=args.pretrain_also, overwrite=args.overwrite
    )
    options["init_encoder_from"] = language_model  # as `--init-encoder-from` on the command line

"""
## Train

`runs.train` reads the source, prints the sizes and classes, learns the
tokeniser from the training texts (or takes the language model's), which
runs in the tf.data pipeline; batches group texts of similar length.
Checkpoints, TensorBoard logs and a resumable backup go to the run
directory: the same command on an interrupted run resumes it exactly.
"""

run = runs.train(task, config, source, run_dir, options=options, overwrite=args.overwrite)
print(f"Trained in {time.perf_counter() - start:.0f} s")

"""
## Evaluate

Accuracy, macro F1, classification report and confusion matrix to
RUN_DIR/metrics.json, with confusion-matrix and training-curve PNGs.
Training evaluated the test data it was given (`run.metrics`);
`run.evaluate(...)` evaluates on other data at any time (here the sample's
held-out share, which has no test file).
"""

metrics = run.metrics
if sample is not None:
    metrics = run.evaluate(splits.validation, "validation")
if metrics is not None:
    print(task.summary(metrics))  # as `nlptool train` and `nlptool evaluate` print it

"""
## Export and predict

The tokeniser, the model and the class names in one SavedModel whose
`serving_default` takes a batch of strings and returns `label` and
`probabilities`. It loads with `tf.saved_model.load`, without nlptool;
`runs.load` opens it (or a run directory) for the same `predict`.
"""

export_dir = run.export(version=1, overwrite=True)  # run_dir/export/1, replaced when the recipe runs again
print(f"Exported to {export_dir}")
sentences = [
    "a gorgeous, witty and deeply moving film",
    "the plot is thin and the jokes are tired",
    "not bad at all",
    "not good",
    "It isn't funny, and I didn't care about anyone in it.",
]
for sentence, row in zip(sentences, runs.load(export_dir).predict(sentences)):
    print(f"{row['label']:9s} {row['probability']:.2f}  {sentence}")
