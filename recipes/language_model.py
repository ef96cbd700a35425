"""
# Language modelling with a stacked GRU

A corpus in, perplexity and a SavedModel that continues raw prompts out:

    python recipes/language_model.py                                # PTB, recipes/configs/language_model_ptb.yaml
    python recipes/language_model.py --dataset tiny_shakespeare     # characters
    python recipes/language_model.py --dataset wikitext2
    python recipes/language_model.py --text-file my_corpus.txt --config recipes/configs/language_model_ptb.yaml

This script and `nlptool train language-model` run the same steps
(`nlptool.tasks.language_model_steps`); read it top to bottom to see them.
Data come from NLPTOOL_DATA_DIR (or are downloaded). The PTB config trains
for up to 57 minutes on 2 CPU cores; `--set training.max_minutes=5` makes a
quick trial.
"""

import argparse
from pathlib import Path

from nlptool import config as config_lib
from nlptool.tasks import language_model_steps as steps
from nlptool.tasks.language_model import LanguageModelConfig

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU language model.")
parser.add_argument("--dataset", default="ptb", help="ptb, wikitext2 or tiny_shakespeare, unless --text-file is given")
parser.add_argument("--text-file", help="your corpus, one line a row; its last 5 %% of lines validate")
parser.add_argument("--config", action="append", help="YAML configs; several merge, the last wins")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--run-dir", help="default: runs/language_model_<dataset>")
args = parser.parse_args()

"""
## Configuration

Defaults of `LanguageModelConfig`, then the YAML files, then `--set`
overrides; the resolved configuration goes to RUN_DIR/config.yaml. The
tokeniser's `unit` says how the corpus becomes one token stream: "line"
ends every line with </s> (PTB, WikiText-2), "text" keeps newlines as
characters (Tiny Shakespeare).
"""

config_files = args.config or [HERE / "configs" / f"language_model_{args.dataset}.yaml"]
config = config_lib.resolve(LanguageModelConfig, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/language_model_{Path(args.text_file).stem if args.text_file else args.dataset}")

"""
## Data

Train, validation and test lines, in corpus order: a language model reads
running text, so nothing is shuffled.
"""

corpus = steps.text_corpus(args.text_file) if args.text_file else steps.dataset_corpus(args.dataset)
print(f"{len(corpus.train):,} training, {len(corpus.validation):,} validation lines")

"""
## Train

The tokeniser is learnt from the training text. The stream of token ids is
cut into `batch_size` columns read `window` tokens at a time; the GRU
states flow from each window into the next (truncated backpropagation
through time). Checkpoints keep the best validation perplexity; training
stops early when it stalls, or when `max_minutes` would be passed.
"""

steps.train(config, corpus, run_dir)

"""
## Evaluate

Perplexity per token on the test split, reading it as one stream: for
word models with the PTB convention (every word and every end of sentence
is predicted), bits per character for character models.
"""

if corpus.test is not None:
    metrics = steps.evaluate(run_dir, corpus.test)
    line = f"Test perplexity {metrics['perplexity']:.2f} over {metrics['tokens']:,} tokens"
    if "bits_per_character" in metrics:
        line += f", {metrics['bits_per_character']:.3f} bits per character"
    print(line)

"""
## Export and generate

The tokeniser, the model and the decoding loop in one SavedModel:
`serving_default` continues prompts with the config's sampling settings,
`generate` takes max_new_tokens, temperature, top_k, top_p and a seed,
`beam_search` a beam width. It loads with `tf.saved_model.load`, without
nlptool.
"""

export_dir = steps.export(run_dir, run_dir / "export", overwrite=True)
print(f"Exported to {export_dir}")
prompts = ["ROMEO:\n", "KING HENRY:\n"] if config.tokenizer.unit == "text" else ["the company said", "in the"]
for prompt, text in zip(prompts, steps.generate(export_dir, prompts, seed=1)):
    print(f"{prompt!r} -> {text!r}")
