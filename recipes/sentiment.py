"""
# Sentiment analysis with a bidirectional GRU

Raw sentences in, a SavedModel that answers raw strings out:

    python recipes/sentiment.py                                   # SST-2, recipes/configs/sentiment_sst2.yaml
    python recipes/sentiment.py --dataset imdb --config recipes/configs/sentiment_imdb.yaml
    python recipes/sentiment.py --csv reviews.csv --text-column review --label-column stars
    python recipes/sentiment.py --dataset imdb --pretrain recipes/configs/language_model_imdb.yaml

This script and `nlptool train sentiment` run the same steps
(`nlptool.tasks.sentiment_steps`); read it top to bottom to see them.
Data come from NLPTOOL_DATA_DIR (or are downloaded). Without SST-2 and
without a network, the script says so and trains on the small hand-written
sample `data/sample_sentiment.csv`, which shows the mechanics, not accuracy.
"""

import argparse
import time
from pathlib import Path

from nlptool import config as config_lib
from nlptool.data import DatasetError
from nlptool.data.csv import LabeledData
from nlptool.tasks import sentiment_steps as steps
from nlptool.tasks.language_model import LanguageModelConfig
from nlptool.tasks.sentiment import SentimentConfig

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU sentiment classifier.")
parser.add_argument("--dataset", default="sst2", help="registered dataset (imdb, sst2) unless --csv is given")
parser.add_argument("--csv", help="your CSV instead of a registered dataset")
parser.add_argument("--text-column", default="text")
parser.add_argument("--label-column", default="label")
parser.add_argument("--config", action="append", help="YAML configs; several merge, the last wins")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--max-train-examples", type=int, help="train on the first N examples only")
parser.add_argument("--run-dir", help="default: runs/sentiment_<dataset>")
parser.add_argument("--pretrain", metavar="LM_CONFIG", help="first train this language model on the training texts")
parser.add_argument("--pretrain-words", type=int, help="words of training text it reads (default: all)")
parser.add_argument("--pretrain-also", nargs="+", default=[], metavar="DATASET", help="more training texts for it")
args = parser.parse_args()

"""
## Configuration

Defaults of `SentimentConfig`, then the YAML files, then `--set` overrides.
The resolved configuration is written to RUN_DIR/config.yaml.
"""

config_files = args.config or [HERE / "configs" / f"sentiment_{args.dataset}.yaml"]
config = config_lib.resolve(SentimentConfig, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/sentiment_{Path(args.csv).stem if args.csv else args.dataset}")

"""
## Data

Train, validation (a stratified share of the training data; for SST-2, of
its whole sentences, whose phrases then leave training) and test frames of
(text, label), and the map from labels to class ids.
"""

seed, fraction = config.training.seed, config.training.validation_fraction
try:
    if args.csv:
        data = steps.csv_data(
            args.csv, args.text_column, args.label_column, seed, fraction, max_train_examples=args.max_train_examples
        )
    else:
        data = steps.dataset_data(args.dataset, seed, fraction, max_train_examples=args.max_train_examples)
except DatasetError as error:
    sample = HERE.parent / "data" / "sample_sentiment.csv"
    print(f"{error}\nUsing the small sample {sample.name} instead.")
    config = config_lib.resolve(
        SentimentConfig,
        [],
        ["training.epochs=30", "training.validation_fraction=0.25", "model.units=16", "tokenizer.vocab_size=500"],
    )
    data = steps.csv_data(sample, "text", "label", seed, 0.25)
    data = LabeledData(data.train, data.validation, data.validation, data.label_map)
print(f"{len(data.train):,} training, {len(data.validation):,} validation examples; classes {data.label_map.names}")

"""
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
language_model = None
if args.pretrain:
    lm_config = config_lib.resolve(LanguageModelConfig, [args.pretrain])
    language_model = run_dir.with_name(run_dir.name + "_language_model")
    steps.pretrain_language_model(lm_config, data, language_model, args.pretrain_words, also=args.pretrain_also)

"""
## Train

The tokeniser is learnt from the training texts (or comes from the language
model) and runs in the tf.data pipeline; batches group texts of similar
length. Checkpoints, TensorBoard logs and a resumable backup go to the run
directory.
"""

steps.train(config, data, run_dir, init_encoder_from=language_model)
print(f"Trained in {time.perf_counter() - start:.0f} s")

"""
## Evaluate

Accuracy, macro F1, classification report and confusion matrix to
RUN_DIR/metrics.json, with confusion-matrix and training-curve PNGs.
"""

if data.test is not None:
    metrics = steps.evaluate(run_dir, data.test)
    print(
        f"Test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} "
        f"on {metrics['examples']:,} examples"
    )

"""
## Export and predict

The tokeniser, the model and the class names in one SavedModel whose
`serving_default` takes a batch of strings and returns `label` and
`probabilities`. It loads with `tf.saved_model.load`, without nlptool.
"""

export_dir = steps.export(run_dir, run_dir / "export", overwrite=True)
print(f"Exported to {export_dir}")
sentences = [
    "a gorgeous, witty and deeply moving film",
    "the plot is thin and the jokes are tired",
    "not bad at all",
    "It isn't funny, and I didn't care about anyone in it.",
]
for sentence, (label, probability) in zip(sentences, steps.predict(export_dir, sentences)):
    print(f"{label:9s} {probability:.2f}  {sentence}")
