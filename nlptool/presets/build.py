"""Train and pack a registered preset: `python -m nlptool.presets.build english-small`.

The corpus is every English text in the data directory that a licence
allows and that no benchmark reports on (see `corpus`); the run goes to
`runs/presets/NAME` and the packed preset to `nlptool/presets/NAME`
(`--out` for elsewhere). What the command prints at the end (perplexities
in float32 and float16, the size) is also in the preset's manifest.
"""

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

from nlptool import presets


@dataclasses.dataclass(frozen=True)
class Recipe:
    description: str
    overrides: tuple[str, ...]  # on the shipped `imdb` language-model config
    max_words: int | None  # of the shuffled training lines (None: all of them)
    version: int


RECIPES = {
    "english-small": Recipe(
        description=(
            "A word-level GRU language model of English (20,000 lowercased words, punctuation split off; "
            "embedding 128, one GRU layer of 128, softmax tied to the embedding), trained on film reviews, "
            "Wikipedia articles and everyday sentences: a starting point for classifiers of English texts."
        ),
        overrides=("model.dropout=0.1", "training.epochs=5", "training.max_minutes=30"),
        max_words=None,
        version=1,
    ),
}

# what the corpus takes from the data directory; test splits, and the sets whose results we report
# (SST-2, whose sentences come from the MR reviews; MR, Subj and CR; BBC News; Gigaword; PTB, an LDC release)
# are left out
SOURCES = (
    ("imdb", "train", "text", "IMDB training reviews (Maas et al. 2011), minus those also in its test split"),
    ("wikitext2", "train", "text", "WikiText-2 training articles (Merity et al. 2016, CC BY-SA 3.0)"),
    ("spa_eng", "train", "en", "the English side of the Tatoeba English-Spanish pairs (CC-BY 2.0)"),
)
LICENCES = "IMDB reviews: research use, cite Maas et al. 2011; WikiText-2: CC BY-SA 3.0; Tatoeba: CC-BY 2.0"
VALIDATION_REVIEWS = 500  # IMDB training reviews held out for validation, beside WikiText-2's validation split


def corpus(seed=1234, data_dir=None):
    """(training lines shuffled, validation lines, a description per source) from the data directory."""
    from nlptool.data import datasets

    rng = random.Random(seed)
    train, validation, described = [], [], []
    for name, split, column, what in SOURCES:
        lines = [str(text).strip() for text in datasets.load(name, split, data_dir=data_dir)[column]]
        lines = [line for line in lines if line]
        if name == "imdb":
            test = {str(text).strip() for text in datasets.load(name, "test", data_dir=data_dir)[column]}
            lines = [line for line in dict.fromkeys(lines) if line not in test]
            rng.shuffle(lines)
            validation += lines[:VALIDATION_REVIEWS]
            lines = lines[VALIDATION_REVIEWS:]
        elif name == "spa_eng":
            lines = list(dict.fromkeys(lines))  # the file repeats an English sentence for each translation
        if name == "wikitext2":
            validation += [str(t).strip() for t in datasets.load(name, "valid", data_dir=data_dir)[column]]
        words = sum(len(line.split()) for line in lines)
        described.append({"dataset": name, "split": split, "lines": len(lines), "words": words, "what": what})
        train += lines
    rng.shuffle(train)
    return train, [line for line in validation if line], described


def build(name, run_dir, out, data_dir=None, overwrite=False):
    import nlptool
    from nlptool.tasks.language_model import first_words

    recipe = RECIPES[name]
    train, validation, described = corpus(data_dir=data_dir)
    train = first_words(train, recipe.max_words)
    started = time.perf_counter()
    run = nlptool.train(
        "language-model",
        run_dir,
        train=train,
        validation=validation,
        config="imdb",
        overrides=list(recipe.overrides),
        overwrite=overwrite,
    )
    minutes = (time.perf_counter() - started) / 60
    full = run.evaluate(validation)["perplexity"]
    words = sum(len(line.split()) for line in train)
    summary = f"{words / 1e6:.1f} M words: IMDB reviews, WikiText-2, Tatoeba English"
    command = f"python -m nlptool.presets.build {name}"
    metrics = {"validation_perplexity": round(full, 2), "training_minutes": round(minutes, 1), "training_words": words}
    folder = presets.pack(
        run,
        out,
        name=name,
        version=recipe.version,
        description=recipe.description,
        corpus=described,
        licences=LICENCES,
        corpus_summary=summary,
        build_command=command,
        metrics=metrics,
    )
    # the same validation text through the packed float16 weights, unpacked as a user gets them
    with tempfile.TemporaryDirectory() as unpacked:
        presets.unpack(presets.read(folder), Path(unpacked))
        half = nlptool.load(unpacked).evaluate(validation)["perplexity"]
    presets.set_metrics(folder, validation_perplexity_float16=round(half, 2))
    print(f"{name}: validation perplexity {full:.2f} (float32), {half:.2f} (float16 as packed); {minutes:.1f} min")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nlptool.presets.build", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--run-dir", help="where the language model trains (default: runs/presets/NAME)")
    parser.add_argument("--out", help="the preset folder to write (default: nlptool/presets/NAME)")
    parser.add_argument("--data-dir", help="the data directory (default: NLPTOOL_DATA_DIR)")
    parser.add_argument("--overwrite", action="store_true", help="train again in a run directory that holds a run")
    args = parser.parse_args(argv)
    out = args.out or Path(presets.__file__).parent / args.name
    build(args.name, args.run_dir or Path("runs") / "presets" / args.name, out, args.data_dir, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
