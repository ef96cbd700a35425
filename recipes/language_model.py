"""
# Language modelling with a stacked GRU

A corpus in, perplexity and a SavedModel that continues raw prompts out:

    python recipes/language_model.py                                # PTB (the shipped config ptb)
    python recipes/language_model.py --dataset tiny_shakespeare     # characters
    python recipes/language_model.py --dataset wikitext2
    python recipes/language_model.py --train-file my_corpus.txt --config ptb

This script and `nlptool train language-model` run the same flow (the task
`nlptool.tasks.get("language-model")` through `nlptool.runs`: `runs.train`,
`Run.evaluate`, `Run.export`, `runs.load(...).predict`); read it top to
bottom to see it. Data come from NLPTOOL_DATA_DIR (or are downloaded). The
PTB config trains for up to 57 minutes on 2 CPU cores;
`--set training.max_minutes=5` makes a quick trial.
"""

import argparse
from pathlib import Path

from nlptool import config as config_lib
from nlptool import configs, runs, tasks
from nlptool.tasks.base import DataSource

parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU language model.")
parser.add_argument("--dataset", default="ptb", help="ptb, wikitext2 or tiny_shakespeare, unless --train-file is given")
parser.add_argument(
    "--train-file", "--text-file", help="your corpus, one line a row (.txt); its last 5 %% of lines validate"
)
parser.add_argument("--config", action="append", help="shipped configs by name, or YAML files; several merge")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--max-train-lines", type=int, metavar="N", help="train on the first N lines only (a quick trial)")
parser.add_argument("--run-dir", help="default: runs/language_model_<dataset>")
parser.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that holds a run")
args = parser.parse_args()

"""
## Configuration

Defaults of `LanguageModelConfig` (the task's `config_class`), then the
YAML files, then `--set` overrides; the resolved configuration goes to
RUN_DIR/config.yaml. The tokeniser's `unit` says how the corpus becomes
one token stream: "line" ends every line with </s> (PTB, WikiText-2),
"text" keeps newlines as characters (Tiny Shakespeare).
"""

task = tasks.get("language-model")
config_files = [configs.find(choice, task.name) for choice in args.config or [args.dataset]]
config = config_lib.resolve(task.config_class, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/language_model_{Path(args.train_file).stem if args.train_file else args.dataset}")

"""
## Data

Where the text comes from (a `DataSource`: a registered corpus, or your
file), read into train, validation and test lines, in corpus order: a
language model reads running text, so nothing is shuffled. The run records
the source in RUN_DIR/run.json, so that `nlptool evaluate RUN_DIR` finds
the test split again.
"""

if args.train_file:
    source = DataSource(train_file=args.train_file, max_train_examples=args.max_train_lines)
else:
    source = DataSource(dataset=args.dataset, max_train_examples=args.max_train_lines)
splits = task.read_data(source, config)  # read and checked before anything is written
print(f"first training line: {splits.train[0]!r}")

"""
## Train

The tokeniser is learnt from the training text. The stream of token ids is
cut into `batch_size` columns read `window` tokens at a time; the GRU
states flow from each window into the next (truncated backpropagation
through time). Checkpoints keep the best validation perplexity; training
stops early when it stalls, or when `max_minutes` would be passed. The
same command on an interrupted run directory resumes it exactly.
"""

run = runs.train(task, config, source, run_dir, overwrite=args.overwrite)

"""
## Evaluate

Perplexity per token on the test split, reading it as one stream: for
word models with the PTB convention (every word and every end of sentence
is predicted), bits per character for character models. Training
evaluated the test split it was given (`run.metrics`, in
RUN_DIR/metrics.json); `run.evaluate(lines)` scores any other text, here
the validation lines of a corpus without a test split.
"""

metrics = run.metrics if splits.test is not None else run.evaluate(splits.validation, split="validation")
line = f"{metrics['split'].capitalize()} perplexity {metrics['perplexity']:.2f} over {metrics['tokens']:,} tokens"
if "bits_per_character" in metrics:
    line += f", {metrics['bits_per_character']:.3f} bits per character"
print(line)

"""
## Export and generate

The tokeniser, the model and the decoding loop in one SavedModel:
`serving_default` continues prompts with the config's sampling settings,
`generate` takes max_new_tokens, temperature, top_k, top_p and a seed,
`beam_search` a beam width. It loads with `tf.saved_model.load`, without
nlptool; `runs.load` opens it (or the run directory) for the same
`predict` as the run's.
"""

export_dir = run.export(version=1, overwrite=True)  # run_dir/export/1, replaced when the recipe runs again
print(f"Exported to {export_dir}")
prompts = ["ROMEO:\n", "KING HENRY:\n"] if config.tokenizer.unit == "text" else ["the company said", "in the"]
for prompt, row in zip(prompts, runs.load(export_dir).predict(prompts, seed=1)):
    print(f"{prompt!r} -> {row['text']!r}")
