"""Train and pack a registered preset: `python -m nlptool.presets.build english-small`.

The corpus is every English text in the data directory that a licence
allows and that no benchmark reports on (see `corpus`). The forward
language model trains in `runs/presets/NAME`; a recipe with a backward
model then trains it in `runs/presets/NAME-backward`: started from the
forward one (its tokeniser, and its word vectors, which stay fixed, so
that a classifier's two directions can share them), on the same corpus
read last word first. The packed preset goes to `nlptool/presets/NAME`
(`--out` for elsewhere). What the command prints at the end (perplexities
in float32 and float16) is also in the preset's manifest.

`--forward-from RUN_DIR|preset:NAME` takes a trained forward model instead
of training one (the preset's own, to add or retrain only the backward
model).
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
    backward_overrides: tuple[str, ...] | None = None  # None: no backward model


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


def build(name, run_dir, out, data_dir=None, overwrite=False, forward_from=None):
    import nlptool
    from nlptool.tasks.language_model import first_words

    recipe = RECIPES[name]
    train, validation, described = corpus(data_dir=data_dir)
    train = first_words(train, recipe.max_words)
    words = sum(len(line.split()) for line in train)

    def trained(direction, run_dir, overrides, **options):
        started = time.perf_counter()
        run = nlptool.train(
            "language-model",
            run_dir,
            train=train,
            validation=validation,
            config="imdb",
            overrides=list(overrides),
            overwrite=overwrite,
            **options,
        )
        minutes = (time.perf_counter() - started) / 60
        perplexity = run.evaluate(validation)["perplexity"]
        print(f"{name}, {direction}: validation perplexity {perplexity:.2f} (float32); {minutes:.1f} min")
        return run, {"validation_perplexity": round(perplexity, 2), "training_minutes": round(minutes, 1)}

    if forward_from is None:
        forward, metrics = trained("forward", run_dir, recipe.overrides)
        metrics["training_words"] = words
    else:
        forward = nlptool.load(forward_from)
        manifest = presets.get(forward_from).manifest if presets.is_preset(forward_from) else {}
        metrics = {**manifest.get("metrics", {}), "training_words": words}
        metrics.pop("validation_perplexity_float16", None)  # measured again below, as packed now
        metrics["validation_perplexity"] = round(forward.evaluate(validation)["perplexity"], 2)
    backward, backward_metrics = None, None
    if recipe.backward_overrides is not None:
        backward_dir = Path(f"{run_dir}-backward")
        backward, backward_metrics = trained(
            "backward", backward_dir, recipe.backward_overrides, init_from=str(forward.path)
        )
    summary = f"{words / 1e6:.1f} M words: IMDB reviews, WikiText-2, Tatoeba English"
    folder = presets.pack(
        forward,
        out,
        name=name,
        version=recipe.version,
        description=recipe.description,
        corpus=described,
        licences=LICENCES,
        corpus_summary=summary,
        build_command=f"python -m nlptool.presets.build {name}",
        metrics=metrics,
        backward=backward,
        backward_metrics=backward_metrics,
    )
    # the same validation text through the packed float16 weights, unpacked as a user gets them
    packed = presets.read(folder)
    for direction in ("forward", "backward") if packed.has_backward else ("forward",):
        with tempfile.TemporaryDirectory() as unpacked:
            presets.unpack(packed, Path(unpacked), direction)
            half = nlptool.load(unpacked).evaluate(validation)["perplexity"]
        presets.set_metrics(folder, direction, validation_perplexity_float16=round(half, 2))
        print(f"{name}, {direction}: validation perplexity {half:.2f} (float16 as packed)")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nlptool.presets.build", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--run-dir", help="where the language model trains (default: runs/presets/NAME)")
    parser.add_argument("--out", help="the preset folder to write (default: nlptool/presets/NAME)")
    parser.add_argument("--data-dir", help="the data directory (default: NLPTOOL_DATA_DIR)")
    parser.add_argument("--overwrite", action="store_true", help="train again in a run directory that holds a run")
    parser.add_argument(
        "--forward-from",
        metavar="RUN_DIR|preset:NAME",
        help="a trained forward language model to pack, instead of training one (then only the backward trains)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(presets.__file__).parent / args.name
    run_dir = args.run_dir or Path("runs") / "presets" / args.name
    build(args.name, run_dir, out, args.data_dir, args.overwrite, args.forward_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
