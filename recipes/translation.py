"""
# Translation with Bahdanau attention

Sentence pairs in, sacreBLEU and a SavedModel that translates raw strings out:

    python recipes/translation.py                       # Multi30k de -> en (the shipped config multi30k)
    python recipes/translation.py --dataset spa_eng     # Spanish -> English (Tatoeba)
    python recipes/translation.py --train-file pairs.csv --source-column de --target-column en \
        --config multi30k

This script and `nlptool train translation` run the same flow (the task
`nlptool.tasks.get("translation")` through `nlptool.runs`: `runs.train`,
`Run.evaluate`, `Run.export`, `runs.load(...).predict`); read it top to
bottom to see it. Data come from NLPTOOL_DATA_DIR (or are downloaded). The
Multi30k config trains for up to 55 minutes on 2 CPU cores;
`--set training.max_minutes=5` makes a quick trial, and so does
`--max-train-pairs 500` with smaller sizes (`--set model.decoder_units=16`).
"""

import argparse
from pathlib import Path

from nlptool import config as config_lib
from nlptool import configs, runs, tasks
from nlptool.tasks.base import DataSource

parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU translation model.")
parser.add_argument("--dataset", default="multi30k", help="multi30k or spa_eng, unless --train-file is given")
parser.add_argument(
    "--train-file",
    "--csv",
    help="your training pairs (CSV, TSV or JSON Lines); 5 %% of them are held out for validation",
)
parser.add_argument("--source-column", default="source", help="with --train-file: the column of source sentences")
parser.add_argument("--target-column", default="target", help="with --train-file: the column of their translations")
parser.add_argument("--config", action="append", help="shipped configs by name, or YAML files; several merge")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--max-train-pairs", type=int, metavar="N", help="train on the first N pairs only (a quick trial)")
parser.add_argument("--run-dir", help="default: runs/translation_<dataset>")
parser.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that holds a run")
args = parser.parse_args()

"""
## Configuration

Defaults of `TranslationConfig` (the task's `config_class`), then the YAML
files, then `--set` overrides; the resolved configuration goes to
RUN_DIR/config.yaml. It names the language pair (`source_lang`,
`target_lang`: columns of the dataset), the tokenisers (SentencePiece per
language by default), the model sizes, the training budget and the
decoding settings of the export.
"""

task = tasks.get("translation")
config_files = [configs.find(choice, task.name) for choice in args.config or [args.dataset]]
config = config_lib.resolve(task.config_class, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/translation_{Path(args.train_file).stem if args.train_file else args.dataset}")

"""
## Data

Where the pairs come from (a `DataSource`: a registered corpus in the
config's direction, or your file with its two columns), read into pairs of
raw sentences: DataFrames with the columns source and target. The
references stay raw (untokenised), because sacreBLEU scores detokenised
output against them. The run records the source in RUN_DIR/run.json, so
that `nlptool evaluate RUN_DIR` finds the test split again.
"""

if args.train_file:
    columns = {"source": args.source_column, "target": args.target_column}
    source = DataSource(train_file=args.train_file, columns=columns, max_train_examples=args.max_train_pairs)
else:
    source = DataSource(dataset=args.dataset, max_train_examples=args.max_train_pairs)
splits = task.read_data(source, config)  # read and checked before anything is written
first = splits.train.iloc[0]
print(f"first training pair: {first['source']!r} -> {first['target']!r}")

"""
## Train

Each side gets a SentencePiece model learnt from its training sentences.
Batches hold pairs of similar length. The decoder is teacher-forced: it
reads <s> y_1 .. y_n and predicts y_1 .. y_n </s>, with label smoothing.
Checkpoints keep the best validation perplexity; training stops early when
it stalls, or when `max_minutes` would be passed. Running the script again
on an interrupted run directory resumes it exactly (a finished one is
refused unless --overwrite).
"""

run = runs.train(task, config, source, run_dir, overwrite=args.overwrite)

"""
## Evaluate

Beam search and greedy translations of the test split, scored with
sacreBLEU (BLEU and chrF, default settings: the signature is recorded) on
the detokenised output against the raw references; the perplexity of the
references; every translation in RUN_DIR/translations.tsv. Training
evaluated the test split it was given (`run.metrics`, in
RUN_DIR/metrics.json); `run.evaluate(pairs)` scores any other pairs.
"""

if splits.test is not None:
    metrics = run.metrics
    beam, greedy = metrics["beam"], metrics["greedy"]
    print(f"BLEU {beam['bleu']:.2f}, chrF {beam['chrf']:.2f} with beam {beam['beam_width']}; ", end="")
    print(f"BLEU {greedy['bleu']:.2f}, chrF {greedy['chrf']:.2f} greedy; perplexity {metrics['perplexity']:.2f}")

"""
## Export, translate, look at the attention

Both tokenisers, the model and the beam search in one SavedModel:
`serving_default` maps source strings to `text` and `score`, `beam_search`
takes a beam width, n-best and length penalty, `greedy` decodes greedily,
`attention` returns the attention weights of a given translation. It loads
with `tf.saved_model.load`, without nlptool; `runs.load` opens it (or the
run directory) for the same `predict` as the run's.
"""

export_dir = run.export(version=1, overwrite=True)  # run_dir/export/1, replaced when the recipe runs again
print(f"Exported to {export_dir}")
translator = runs.load(export_dir)
sentences = (splits.test if splits.test is not None else splits.validation)["source"].tolist()[:3]
for sentence, row in zip(sentences, translator.predict(sentences)):
    print(f"{sentence} -> {row['text']}")
[row] = translator.predict(sentences[:1], plot_attention=run_dir / "attention.png")
print(f"Attention of '{row['text']}' drawn in {run_dir / 'attention.png'}")
