"""
# Summarisation with copy and coverage

(text, summary) pairs in, ROUGE and a SavedModel that summarises raw strings out:

    python recipes/summarization.py                              # Gigaword headlines
    python recipes/summarization.py --dataset bbc_news_summary   # BBC News articles
    python recipes/summarization.py --train-file pairs.csv --text-column article --summary-column summary \
        --config gigaword

This script and `nlptool train summarization` run the same flow (the task
`nlptool.tasks.get("summarization")` through `nlptool.runs`: `runs.train`,
`Run.evaluate`, `Run.export`, `runs.load(...).predict`); read it top to
bottom to see it. Registered data come from NLPTOOL_DATA_DIR (Gigaword and
BBC News have no download: their terms ask you to get them yourself). The
Gigaword config trains for up to an hour on 2 CPU cores;
`--set training.max_minutes=5` makes a quick trial, and so does
`--max-train-pairs 500` with smaller sizes (`--set model.decoder_units=32`).
"""

import argparse
from pathlib import Path

from nlptool import config as config_lib
from nlptool import configs, runs, tasks
from nlptool.tasks.base import DataSource

parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU summarisation model.")
parser.add_argument(
    "--dataset", default="gigaword", help="gigaword or bbc_news_summary (its config also serves --train-file)"
)
parser.add_argument(
    "--train-file", help="your training pairs (CSV, TSV or JSON Lines); 5 %% of them are held out for validation"
)
parser.add_argument("--test-file", help="with --train-file: pairs to evaluate on")
parser.add_argument("--text-column", default="text", help="with --train-file: the column of the texts")
parser.add_argument("--summary-column", default="summary", help="with --train-file: the column of their summaries")
parser.add_argument("--config", action="append", help="shipped configs by name, or YAML files; several merge")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--max-train-pairs", type=int, metavar="N", help="train on the first N pairs only (a quick trial)")
parser.add_argument("--run-dir", help="default: runs/summarization_<dataset>")
parser.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that holds a run")
args = parser.parse_args()

"""
## Configuration

Defaults of `SummarizationConfig` (the task's `config_class`), then the
YAML files, then `--set` overrides; the resolved configuration goes to
RUN_DIR/config.yaml. It names the tokeniser (one for texts and summaries:
the copy moves text ids into the summary), the model (`model.pointer` for
the copy distribution, `model.coverage` for coverage), the training budget
with the coverage phase, the decoding settings of the export and the lead
baseline of the evaluation.
"""

task = tasks.get("summarization")
name = Path(args.train_file).stem if args.train_file else args.dataset
config_files = [configs.find(choice, task.name) for choice in args.config or [args.dataset]]
config = config_lib.resolve(task.config_class, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/summarization_{name}")

"""
## Data

Where the pairs come from (a `DataSource`: a registered corpus, or your
file with its two columns), read into DataFrames with the columns text and
summary. Gigaword's training data here are the two pools of its official
validation set (23k pairs; the articles that also occur in the test set
left out), not its 3.8M-pair training set; its test split is the standard
1,951 pairs. BBC News has no official split: ours holds 80 / 10 / 10 % of
its distinct articles.
"""

if args.train_file:
    columns = {"text": args.text_column, "summary": args.summary_column}
    source = DataSource(
        train_file=args.train_file, test_file=args.test_file, columns=columns, max_train_examples=args.max_train_pairs
    )
else:
    source = DataSource(dataset=args.dataset, max_train_examples=args.max_train_pairs)
splits = task.read_data(source, config)  # read and checked before anything is written
first = splits.train.iloc[0]
print(f"first training pair: {first['text'][:100]!r} -> {first['summary'][:100]!r}")

"""
## Train

A word vocabulary (or SentencePiece) learnt from the training texts and
summaries. With a word vocabulary, each text's words outside the
vocabulary get temporary ids, so that the copy distribution can write them
into the summary. The decoder is teacher-forced. Training runs in two
phases (See et al. 2017): without the coverage loss until validation
perplexity stops improving (or the budget says the last epochs have come),
then `training.coverage_epochs` more epochs with it, starting from the best
weights of the first phase. Running the script again on an interrupted run
directory resumes it exactly.
"""

run = runs.train(task, config, source, run_dir, overwrite=args.overwrite)

"""
## Evaluate

Beam search and greedy summaries of the test split, and the lead baseline
(the first `evaluation.lead_words` words of the text, and the lead cut to
each summary's length), scored with `rouge-score` (ROUGE-1, ROUGE-2,
ROUGE-L F1 with the Porter stemmer); how many summary words occur in the
text, and how many trigrams repeat. Every output is in RUN_DIR/summaries.tsv.
"""

if splits.test is not None:
    metrics = run.metrics
    print(task.summary(metrics))

"""
## Export, summarise, look at the attention

The tokeniser, the model and the beam search in one SavedModel:
`serving_default` maps `text` to `summary` and `score`, `beam_search`
takes the beam width, n-best, length and coverage penalties, length limits
and trigram blocking, `greedy` decodes greedily, `attention` returns the
attention and p_gen of a given summary. It loads with
`tf.saved_model.load`, without nlptool; `runs.load` opens it (or the run
directory) for the same `predict` as the run's.
"""

export_dir = run.export(version=1, overwrite=True)  # run_dir/export/1, replaced when the recipe runs again
print(f"Exported to {export_dir}")
summarizer = runs.load(export_dir)
texts = (splits.test if splits.test is not None else splits.validation)["text"].tolist()[:3]
for text, row in zip(texts, summarizer.predict(texts)):
    print(f"{text[:120]} -> {row['text']}")
[row] = summarizer.predict(texts[:1], plot_attention=run_dir / "attention.png")
print(f"Attention and p_gen of '{row['text']}' drawn in {run_dir / 'attention.png'}")
