"""
# Translation with Bahdanau attention

Sentence pairs in, sacreBLEU and a SavedModel that translates raw strings out:

    python recipes/translation.py                       # Multi30k de -> en (configs/translation_multi30k.yaml)
    python recipes/translation.py --dataset spa_eng     # Spanish -> English (Tatoeba)
    python recipes/translation.py --csv pairs.csv --source-column de --target-column en \
        --config recipes/configs/translation_multi30k.yaml

This script and `nlptool train translation` run the same steps
(`nlptool.tasks.translation_steps`); read it top to bottom to see them.
Data come from NLPTOOL_DATA_DIR (or are downloaded). The Multi30k config
trains for up to 55 minutes on 2 CPU cores; `--set training.max_minutes=5`
makes a quick trial.
"""

import argparse
from pathlib import Path

from nlptool import config as config_lib
from nlptool.tasks import translation_steps as steps
from nlptool.tasks.translation import TranslationConfig

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description="Train, evaluate and export a GRU translation model.")
parser.add_argument("--dataset", default="multi30k", help="multi30k or spa_eng, unless --csv is given")
parser.add_argument("--csv", help="your training pairs; 5 %% of them are held out for validation")
parser.add_argument("--source-column", help="with --csv: the column of source sentences")
parser.add_argument("--target-column", help="with --csv: the column of their translations")
parser.add_argument("--config", action="append", help="YAML configs; several merge, the last wins")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
parser.add_argument("--run-dir", help="default: runs/translation_<dataset>")
args = parser.parse_args()

"""
## Configuration

Defaults of `TranslationConfig`, then the YAML files, then `--set`
overrides; the resolved configuration goes to RUN_DIR/config.yaml. It names
the language pair (`source_lang`, `target_lang`: columns of the dataset),
the tokenisers (SentencePiece per language by default), the model sizes, the
training budget and the decoding settings of the export.
"""

config_files = args.config or [HERE / "configs" / f"translation_{args.dataset}.yaml"]
config = config_lib.resolve(TranslationConfig, config_files, args.set)
run_dir = Path(args.run_dir or f"runs/translation_{Path(args.csv).stem if args.csv else args.dataset}")

"""
## Data

Pairs of raw sentences: DataFrames with the columns source and target. The
references stay raw (untokenised), because sacreBLEU scores detokenised
output against them.
"""

if args.csv:
    corpus = steps.csv_corpus(args.csv, args.source_column, args.target_column, seed=config.training.seed)
else:
    corpus = steps.dataset_corpus(args.dataset, config.source_lang, config.target_lang)
print(f"{len(corpus.train):,} training, {len(corpus.validation):,} validation pairs")

"""
## Train

Each side gets a SentencePiece model learnt from its training sentences.
Batches hold pairs of similar length. The decoder is teacher-forced: it
reads <s> y_1 .. y_n and predicts y_1 .. y_n </s>, with label smoothing.
Checkpoints keep the best validation perplexity; training stops early when
it stalls, or when `max_minutes` would be passed. Running the script again
on an interrupted run directory resumes it.
"""

steps.train(config, corpus, run_dir)

"""
## Evaluate

Beam search and greedy translations of the test split, scored with
sacreBLEU (BLEU and chrF, default settings: the signature is recorded) on
the detokenised output against the raw references; the perplexity of the
references; every translation in RUN_DIR/translations.tsv.
"""

if corpus.test is not None:
    metrics = steps.evaluate(run_dir, corpus.test)
    beam, greedy = metrics["beam"], metrics["greedy"]
    print(f"BLEU {beam['bleu']:.2f}, chrF {beam['chrf']:.2f} with beam {beam['beam_width']}; ", end="")
    print(f"BLEU {greedy['bleu']:.2f}, chrF {greedy['chrf']:.2f} greedy; perplexity {metrics['perplexity']:.2f}")

"""
## Export, translate, look at the attention

Both tokenisers, the model and the beam search in one SavedModel:
`serving_default` maps source strings to `text` and `score`, `beam_search`
takes a beam width, n-best and length penalty, `greedy` decodes greedily,
`attention` returns the attention weights of a given translation. It loads
with `tf.saved_model.load`, without nlptool.
"""

export_dir = steps.export(run_dir, run_dir / "export", overwrite=True)
print(f"Exported to {export_dir}")
sentences = corpus.test["source"].tolist()[:3] if corpus.test is not None else corpus.validation["source"].tolist()[:3]
for sentence, best in zip(sentences, steps.translate(export_dir, sentences)):
    print(f"{sentence} -> {best[0][0]}")
translation = steps.plot_attention(export_dir, sentences[0], run_dir / "attention.png")
print(f"Attention of '{translation}' drawn in {run_dir / 'attention.png'}")
