# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Tokenisers compared on the same text
#
# A tokeniser decides what a model sees: whole words, characters, bytes, or subword pieces. This notebook trains
# the five tokenisers of nlptool (word, character, byte, WordPiece, SentencePiece) on the same SST-2 sentences
# and measures, on the same held-out text:
#
# - how large each vocabulary is and how many tokens a text becomes (the sequence the GRU has to read);
# - how often each one has to answer `<unk>`, on text like its training text (SST-2) and on text that is not
#   (IMDB reviews);
# - how the vocabulary size of the word and subword tokenisers trades length for unknowns;
# - what each choice does to the same GRU sentiment classifier: accuracy, training time, the sentences with
#   unknown words, and input whose casing differs from the training text.
#
# Runs in about 10 minutes on a 2-core CPU at full size.

# %% [markdown]
# ## Setup
#
# `SMOKE` shrinks every size so that the whole notebook runs in about a minute (for tests); the numbers it
# prints are then meaningless. Run directories go under `runs/notebooks/02-tokenizers/` of the repository.

# %%
import collections
import json
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import nlptool
from nlptool import tokenizers
from nlptool.data import datasets
from nlptool.tokenizers import PAD_ID, UNK_ID
from nlptool.tokenizers.files import load_tokenizer

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"

ROOT = Path.cwd().resolve()
while not (ROOT / "pyproject.toml").is_file():
    if ROOT.parent == ROOT:
        raise RuntimeError("Run this notebook from inside the nlptool repository.")
    ROOT = ROOT.parent
os.chdir(ROOT)  # the paths below, and those nlptool prints, are relative to the repository
RUNS = Path("runs") / "notebooks" / "02-tokenizers"
# the Makefile's data directory, unless NLPTOOL_DATA_DIR names another
if "NLPTOOL_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NLPTOOL_DATA_DIR"] = str(ROOT.parent / "shared" / "data")

N_TRAIN = 300 if SMOKE else 20_000  # SST-2 training rows: every tokeniser and classifier learns from these
N_IMDB = 100 if SMOKE else 2_000  # IMDB test reviews for the out-of-domain measurements
SUBWORD_VOCAB = 1_000 if SMOKE else 8_000  # WordPiece and SentencePiece vocabulary, reserved ids included
SMALL_WORD_VOCAB = 200 if SMOKE else 1_000  # a deliberately small word vocabulary for the classifiers
SWEEP = [300, 600] if SMOKE else [500, 1_000, 2_000, 4_000, 8_000, 16_000]  # vocabulary sizes to sweep
EPOCHS = 1 if SMOKE else 2
UNITS = 8 if SMOKE else 64  # GRU units per direction
SEED = 0

# one palette for every figure, explicit colours on a white background (readable in light and dark themes)
plt.style.use("default")
plt.rcParams.update(
    {"figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white", "figure.dpi": 100}
)
COLOURS = {
    "word": "#0072B2",
    f"word-{SMALL_WORD_VOCAB}": "#56B4E9",
    "char": "#D55E00",
    "byte": "#CC79A7",
    "wordpiece": "#009E73",
    "sentencepiece": "#E69F00",
}
print("Smoke size" if SMOKE else "Full size", f"; runs in {RUNS}")

# %% [markdown]
# ## The data
#
# SST-2 (Socher et al., 2013, in its GLUE form) holds short film-review sentences and their phrases, labelled
# negative (0) or positive (1); its dev set of whole sentences is the test set here. IMDB (Maas et al., 2011)
# holds whole reviews by other writers. Both come from nlptool's dataset registry.

# %%
sst2_train = datasets.load("sst2", "train").iloc[:N_TRAIN]
sst2_dev = datasets.load("sst2", "dev")
imdb = datasets.load("imdb", "test").sample(n=N_IMDB, random_state=SEED).reset_index(drop=True)

train_texts = sst2_train["text"].tolist()
dev_texts = sst2_dev["text"].tolist()
imdb_texts = imdb["text"].tolist()


def has_capitals(texts):
    return np.mean([any(c.isupper() for c in t) for t in texts])


pd.DataFrame(
    {
        "texts": [len(train_texts), len(dev_texts), len(imdb_texts)],
        "mean characters": [np.mean([len(t) for t in ts]) for ts in (train_texts, dev_texts, imdb_texts)],
        "share with a capital letter": [has_capitals(ts) for ts in (train_texts, dev_texts, imdb_texts)],
    },
    index=["SST-2 train (first rows)", "SST-2 dev", "IMDB test (sample)"],
).round(3)

# %%
for text in sst2_dev["text"].iloc[:3]:
    print("SST-2 |", text)
print("IMDB  |", imdb_texts[0][:300], "...")

# %% [markdown]
# Two things in the table matter for everything below. IMDB reviews are many times longer than SST-2 sentences,
# and SST-2 is lower-cased throughout (GLUE distributes it that way), while most IMDB reviews have capitals. A
# tokeniser learns its vocabulary from the SST-2 rows only.

# %% [markdown]
# ## Five tokenisers, trained on the same rows
#
# Each tokeniser is a Keras layer; `train(texts)` learns its vocabulary (the byte tokeniser has nothing to learn:
# its 256 bytes plus the 4 reserved ids are fixed). The subword tokenisers get the same target vocabulary size.


# %%
def make_tokenizer(kind, vocab_size=None):
    """An nlptool tokeniser of `kind`, trained on the SST-2 training rows."""
    if vocab_size is None:  # word and char keep every word or character seen; byte has nothing to learn
        untrained = {
            "word": tokenizers.WordTokenizer,
            "char": tokenizers.CharTokenizer,
            "byte": tokenizers.ByteTokenizer,
        }
        return untrained[kind]().train(train_texts)
    return tokenizers.create(kind, vocab_size).train(train_texts)


KINDS = {"word": None, "char": None, "byte": None, "wordpiece": SUBWORD_VOCAB, "sentencepiece": SUBWORD_VOCAB}
TOKENIZERS, train_seconds = {}, {}
for kind, size in KINDS.items():
    start = time.perf_counter()
    TOKENIZERS[kind] = make_tokenizer(kind, size)
    train_seconds[kind] = time.perf_counter() - start
    print(f"{kind:14s} vocabulary {TOKENIZERS[kind].vocabulary_size():>6,}   learnt in {train_seconds[kind]:5.1f} s")

# %% [markdown]
# The word tokeniser here keeps every word it saw, so its vocabulary is as large as the training text allows. The
# character vocabulary is small because SST-2 has no capitals and few symbols.
#
# Here is one sentence as each of them sees it. Every token is shown by decoding its id alone with `detokenize`;
# SentencePiece's word-start marker is dropped in that decoding, so its pieces read without spaces, and a byte
# that is part of a multi-byte character shows as `�`.


# %%
def pieces(tokenizer, text):
    """The tokens of `text`, each decoded alone; <unk> for the unknown id."""
    ids = np.asarray(tokenizer([text]))[0]
    ids = ids[ids != PAD_ID]
    alone = tokenizer.detokenize([[int(i)] for i in ids]).numpy()  # one text per id
    return ["<unk>" if i == UNK_ID else text.decode("utf-8", "replace") for i, text in zip(ids, alone)]


def show(text, limit=150):
    print(f"text: {text}\n")
    for kind, tokenizer in TOKENIZERS.items():
        tokens = pieces(tokenizer, text)
        shown = " | ".join(tokens)
        print(f"{kind:14s} {len(tokens):3d} tokens: {shown[:limit]}{' ...' if len(shown) > limit else ''}")
    print()


show(dev_texts[1])
show("Kutcher's performance was unbelievably good, naïve but Charming!")

# %% [markdown]
# The second sentence is made up, in the style of an IMDB review. Word and WordPiece lower-case the text before
# looking it up, so capitals cost them nothing. The character and SentencePiece tokenisers were trained on text
# without a single capital letter, so every capital they meet is `<unk>` to them (SentencePiece keeps case; its
# default normalisation is NFKC, not lower-casing). A word the word tokeniser has not seen (a name, a rare
# spelling) is `<unk>` as a whole; WordPiece and SentencePiece spell it with smaller pieces instead. The byte
# tokeniser never answers `<unk>`, at the price of the longest sequence.

# %% [markdown]
# ## Vocabulary, length and unknowns
#
# For every tokeniser: its vocabulary size, the tokens per text (mean and 99th percentile) and two unknown rates,
# on SST-2 dev (the same kind of text as training) and on the IMDB sample: the share of tokens that are `<unk>`,
# and the share of texts with at least one `<unk>`. The second is comparable across tokenisers; the first is not
# quite, since one unknown word and one unknown character lose different amounts of text.


# %%
def measure(tokenizer, texts, batch=128):
    """(tokens per text, <unk> tokens per text) as numpy arrays."""
    lengths, unknown = [], []
    for i in range(0, len(texts), batch):
        ids = np.asarray(tokenizer(texts[i : i + batch]))
        lengths.append((ids != PAD_ID).sum(axis=1))
        unknown.append((ids == UNK_ID).sum(axis=1))
    return np.concatenate(lengths), np.concatenate(unknown)


def stats(name, tokenizer):
    row = {"tokeniser": name, "vocabulary": tokenizer.vocabulary_size()}
    for corpus, texts in (("SST-2 dev", dev_texts), ("IMDB", imdb_texts)):
        lengths, unknown = measure(tokenizer, texts)
        row[f"{corpus}: mean tokens"] = lengths.mean()
        row[f"{corpus}: p99 tokens"] = np.percentile(lengths, 99)
        row[f"{corpus}: <unk> tokens %"] = 100 * unknown.sum() / lengths.sum()
        row[f"{corpus}: texts with <unk> %"] = 100 * np.mean(unknown > 0)
    return row


table = pd.DataFrame([stats(kind, tokenizer) for kind, tokenizer in TOKENIZERS.items()]).set_index("tokeniser")
table.round(2)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for kind, row in table.iterrows():
    left.scatter(row["vocabulary"], row["SST-2 dev: mean tokens"], s=80, color=COLOURS[kind], label=kind, zorder=3)
    left.annotate(
        kind,
        (row["vocabulary"], row["SST-2 dev: mean tokens"]),
        xytext=(6, 6),
        textcoords="offset points",
        color="black",
    )
left.set(
    xscale="log",
    yscale="log",
    xlabel="vocabulary size (log)",
    ylabel="mean tokens per SST-2 dev sentence (log)",
    title="A larger vocabulary gives shorter sequences",
)
left.grid(True, which="both", color="#cccccc", linewidth=0.5)

x = np.arange(len(table))
for offset, corpus, hatch in ((-0.2, "SST-2 dev", None), (0.2, "IMDB", "//")):
    right.bar(
        x + offset,
        table[f"{corpus}: texts with <unk> %"],
        width=0.4,
        hatch=hatch,
        edgecolor="black",
        color=[COLOURS[k] for k in table.index],
        label=corpus,
    )
right.set(
    xticks=x,
    xticklabels=table.index,
    ylabel="texts with at least one <unk> (%)",
    ylim=(0, 105),
    title="Unknowns in-domain (plain) and on IMDB (hatched)",
)
right.legend(loc="upper left")
right.grid(True, axis="y", color="#cccccc", linewidth=0.5)
fig.tight_layout()
plt.show()

# %%
word_len = table.loc["word", "SST-2 dev: mean tokens"]
for kind in table.index:
    ratio = table.loc[kind, "SST-2 dev: mean tokens"] / word_len
    print(f"{kind:14s} {ratio:4.1f}x the word tokeniser's sequence length on SST-2 dev")

# %% [markdown]
# Read the left panel as a trade: the character and byte tokenisers have tiny vocabularies and sequences several
# times longer than words (the ratios just printed), the word tokeniser the reverse, and the subword tokenisers sit
# in between, close to word length with a vocabulary of the size we asked for. For a GRU the length is the cost:
# it reads one token per step, so training time grows with the number of tokens.
#
# The right panel shows what the small vocabularies do not buy you here. On SST-2 dev the word tokeniser meets
# unseen words in some sentences; the others almost never answer `<unk>`. On IMDB the picture changes: nearly every
# review has words the SST-2 vocabulary lacks, and the character and SentencePiece tokenisers, which keep case, fail
# on capitals. Only the byte tokeniser, and WordPiece (which lower-cases and spells unseen words from pieces), stay
# close to zero.

# %% [markdown]
# ### Which tokens are unknown on IMDB?
#
# The most frequent IMDB tokens that the word and character vocabularies lack. `WordTokenizer.split` gives the
# words exactly as the tokeniser normalises them.

# %%
word_vocab = set(TOKENIZERS["word"].vocabulary)
missing_words = collections.Counter(
    w.decode("utf-8")
    for w in TOKENIZERS["word"].split(imdb_texts).flat_values.numpy()
    if w.decode("utf-8") not in word_vocab
)
char_vocab = set(TOKENIZERS["char"].vocabulary)
missing_chars = collections.Counter(c for t in imdb_texts for c in t if c not in char_vocab)
print("unknown words:", ", ".join(f"{w} ({n})" for w, n in missing_words.most_common(20)))
print("unknown characters:", ", ".join(f"{c!r} ({n})" for c, n in missing_chars.most_common(20)))

# %% [markdown]
# Unknown words are mostly ordinary English words that did not occur in the training rows, plus names; the
# numbers in brackets are counts in the IMDB sample. The unknown characters are dominated by capital letters and the
# newlines that the registry makes of IMDB's `<br />` tags. A character model trained on lower-cased text has
# simply never seen them; lower-casing the input (as the word and WordPiece tokenisers do) or training on text
# with the casing you will serve is the fix, not a larger vocabulary.

# %% [markdown]
# ## The vocabulary-size knob
#
# Word, WordPiece and SentencePiece take a vocabulary size. The sweep trains each at several sizes on the same
# rows and measures the IMDB sample, where unknowns actually occur. (WordPiece may exceed the requested size:
# every character it saw is kept both alone and as a `##` continuation; SentencePiece may fall short when the
# training text cannot fill the vocabulary. The x axis is the size each one actually got.)

# %%
sweep_rows = []
for kind in ("word", "wordpiece", "sentencepiece"):
    for size in SWEEP:
        tokenizer = make_tokenizer(kind, size)
        lengths, unknown = measure(tokenizer, imdb_texts)
        sweep_rows.append(
            {
                "kind": kind,
                "requested": size,
                "vocabulary": tokenizer.vocabulary_size(),
                "IMDB tokens per review": lengths.mean(),
                "IMDB <unk> tokens %": 100 * unknown.sum() / lengths.sum(),
            }
        )
sweep = pd.DataFrame(sweep_rows)
sweep.round(2)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for kind, rows in sweep.groupby("kind", sort=False):
    left.plot(rows["vocabulary"], rows["IMDB tokens per review"], "o-", color=COLOURS[kind], label=kind)
    right.plot(rows["vocabulary"], rows["IMDB <unk> tokens %"], "o-", color=COLOURS[kind], label=kind)
for kind in ("char", "byte"):  # fixed vocabularies: one point each
    left.scatter(
        table.loc[kind, "vocabulary"],
        table.loc[kind, "IMDB: mean tokens"],
        marker="s",
        s=70,
        color=COLOURS[kind],
        label=kind,
    )
    right.scatter(
        table.loc[kind, "vocabulary"],
        table.loc[kind, "IMDB: <unk> tokens %"],
        marker="s",
        s=70,
        color=COLOURS[kind],
        label=kind,
    )
left.set(
    xscale="log",
    yscale="log",
    xlabel="vocabulary size (log)",
    ylabel="mean tokens per IMDB review (log)",
    title="Length falls as the vocabulary grows",
)
right.set(
    xscale="log",
    xlabel="vocabulary size (log)",
    ylabel="<unk> share of IMDB tokens (%)",
    title="Unknowns: only the word tokeniser pays much",
)
for ax in (left, right):
    ax.grid(True, which="both", color="#cccccc", linewidth=0.5)
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The subword curves show the design: as the vocabulary grows, a review takes fewer pieces, and a small vocabulary
# costs length, not unknowns, because rare words are spelled from smaller pieces. SentencePiece's unknowns stay at
# the level set by its uncovered characters (the capitals), whatever its size. The word tokeniser's unknowns fall as
# its vocabulary grows, but only down to the words that were never in the training rows at all; its length does not
# change with vocabulary size, since an unknown word is still one token.

# %% [markdown]
# ## What it does to a classifier
#
# Now the same sentiment classifier (the shipped `sst2` config: an embedding, a bidirectional GRU, max and mean
# pooling; here with `UNITS` GRU units per direction and `EPOCHS` epochs) is trained once per tokeniser, on the same
# first `N_TRAIN` SST-2 training rows (nlptool first holds out whole sentences for validation, so slightly fewer),
# and tested on SST-2 dev. The tokeniser is chosen with the config keys `tokenizer.kind` and `tokenizer.vocab_size`;
# each run learns its own tokeniser from its training rows. A sixth run uses a deliberately small word vocabulary.
#
# `tokenizer.max_length` (tokens kept per text) is set per tokeniser to the 99th percentile of its SST-2 dev lengths
# measured above, so that every model sees whole sentences and none is truncated more than another.

# %%
small_word = f"word-{SMALL_WORD_VOCAB}"
CLASSIFIERS = {  # name -> (tokenizer.kind, tokenizer.vocab_size); byte ignores the size
    "word": ("word", 20_000),
    small_word: ("word", SMALL_WORD_VOCAB),
    "char": ("char", 20_000),
    "byte": ("byte", 20_000),
    "wordpiece": ("wordpiece", SUBWORD_VOCAB),
    "sentencepiece": ("sentencepiece", SUBWORD_VOCAB),
}

if SMOKE:  # three of them show every step below
    CLASSIFIERS = {name: CLASSIFIERS[name] for name in ("word", small_word, "byte")}

RESULTS, RUNS_BY_NAME = [], {}
for name, (kind, vocab_size) in CLASSIFIERS.items():
    max_length = int(np.ceil(table.loc[kind, "SST-2 dev: p99 tokens"]))
    start = time.perf_counter()
    run = nlptool.train(
        "sentiment",
        RUNS / name,
        dataset="sst2",
        config="sst2",
        overrides=[
            f"tokenizer.kind={kind}",
            f"tokenizer.vocab_size={vocab_size}",
            f"tokenizer.max_length={max_length}",
            f"model.units={UNITS}",
            f"training.epochs={EPOCHS}",
            f"training.seed={SEED}",
        ],
        max_train_examples=N_TRAIN,
        overwrite=True,
        verbose=0,
    )
    wall = time.perf_counter() - start
    RUNS_BY_NAME[name] = run
    training = json.loads((run.path / "training.json").read_text())  # seconds, epochs, train_examples
    RESULTS.append(
        {
            "classifier": name,
            "max_length": max_length,
            "train examples": int(training["train_examples"]),
            "epochs": int(training["epochs"]),
            "training s": training["seconds"],
            "accuracy": run.metrics["accuracy"],
            "macro F1": run.metrics["macro_f1"],
            "test examples": run.metrics["examples"],
        }
    )
    print(f"{name:14s} accuracy {run.metrics['accuracy']:.4f}, training {training['seconds']:.1f} s, call {wall:.0f} s")

results = pd.DataFrame(RESULTS).set_index("classifier")
# the standard error of an accuracy measured on n independent test sentences
results["std. error"] = np.sqrt(results["accuracy"] * (1 - results["accuracy"]) / results["test examples"])
results.round(4)

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
y = np.arange(len(results))
colours = [COLOURS[name] for name in results.index]
left.barh(
    y,
    results["accuracy"],
    xerr=2 * results["std. error"],
    color=colours,
    edgecolor="black",
    error_kw={"ecolor": "black", "capsize": 4},
)
left.set(
    yticks=y,
    yticklabels=results.index,
    xlabel="SST-2 dev accuracy (bars: +-2 standard errors)",
    xlim=(max(0.0, results["accuracy"].min() - 0.1), min(1.0, results["accuracy"].max() + 0.05)),
    title="Accuracy",
)
left.invert_yaxis()
right.barh(y, results["training s"], color=colours, edgecolor="black")
right.set(
    yticks=y, yticklabels=results.index, xlabel="training seconds (all epochs, this machine)", title="Training time"
)
right.invert_yaxis()
for ax in (left, right):
    ax.grid(True, axis="x", color="#cccccc", linewidth=0.5)
fig.tight_layout()
plt.show()

# %%
best, worst = results["accuracy"].idxmax(), results["accuracy"].idxmin()
gap = results.loc[best, "accuracy"] - results.loc[worst, "accuracy"]
se = np.sqrt(results.loc[best, "std. error"] ** 2 + results.loc[worst, "std. error"] ** 2)
print(
    f"best {best} {results.loc[best, 'accuracy']:.4f}, worst {worst} {results.loc[worst, 'accuracy']:.4f}: "
    f"a gap of {100 * gap:.1f} points, {gap / se:.1f} standard errors of the difference\n"
)
word = results.loc["word"]
for name, row in results.iterrows():
    difference = row["accuracy"] - word["accuracy"]
    difference_se = np.sqrt(row["std. error"] ** 2 + word["std. error"] ** 2)
    print(
        f"{name:14s} against word: {100 * difference:+5.1f} points ({difference / max(difference_se, 1e-9):+4.1f} "
        f"standard errors), {row['training s'] / word['training s']:4.1f}x the training time"
    )

# %% [markdown]
# How to read this: the `std. error` column is the standard error of each accuracy on the 872 dev sentences, and a
# single training seed adds variation of its own on top, so two models whose error bars overlap are not told apart
# by this experiment; only a gap of several standard errors (printed above) is a finding.
#
# Now put the time ratios next to the length ratios printed earlier (characters and bytes are several times as
# long as words). The training time grows far less than the length: SST-2 sentences are short, each batch is
# padded only to its own longest sentence, and at this size a GRU step is cheap next to the fixed costs of every
# batch and epoch. What the long sequences cost at this training budget is accuracy, by gaps of several standard
# errors: a character or byte model has to learn words from their letters before it can learn what they mean, and
# two epochs on 20,000 rows are not enough for that. Training on all 64k rows or for
# more epochs changes every accuracy; the shipped `sst2` config's results are in `docs/benchmarks.md`.

# %% [markdown]
# ## Unknown words and the classifier's errors
#
# Does a sentence with unknown words get classified worse? Group the dev sentences by how many `<unk>` the small
# word vocabulary gives them (with the tokeniser that run actually learnt, read from its run directory), and
# measure every classifier on each group. `run.predict` returns one label per text.

# %%
label_names = datasets.get("sst2").label_names  # 0 -> "negative", 1 -> "positive"
truth = sst2_dev["label"].map(label_names).to_numpy()


def predicted_labels(run, texts):
    return np.array([row["label"] for row in run.predict(texts)])


predictions = {name: predicted_labels(run, dev_texts) for name, run in RUNS_BY_NAME.items()}
correct = {name: labels == truth for name, labels in predictions.items()}

small_tokenizer = load_tokenizer(RUNS_BY_NAME[small_word].path)
_, small_unknown = measure(small_tokenizer, dev_texts)
groups = pd.cut(small_unknown, [-1, 0, 2, 5, np.inf], labels=["0", "1-2", "3-5", "6+"])
by_group = pd.DataFrame(
    {name: pd.Series(hits).groupby(groups, observed=False).mean() for name, hits in correct.items()}
)
by_group.insert(0, "sentences", pd.Series(groups).value_counts().reindex(by_group.index).fillna(0).astype(int))
by_group.index.name = f"<unk> under {small_word}"
by_group.round(3)

# %%
fig, ax = plt.subplots(figsize=(10, 4.5))
names = list(correct)
width = 0.8 / len(names)
x = np.arange(len(by_group))
for i, name in enumerate(names):
    ax.bar(
        x + (i - (len(names) - 1) / 2) * width,
        by_group[name],
        width,
        color=COLOURS[name],
        edgecolor="black",
        label=name,
    )
ax.set(
    xticks=x,
    xticklabels=[f"{g}\n({n} sentences)" for g, n in zip(by_group.index, by_group["sentences"])],
    xlabel=f"<unk> tokens the {small_word} vocabulary gives a dev sentence",
    ylabel="accuracy",
    ylim=(0, 1),
    title="Accuracy of every classifier on the sentences the small word vocabulary cannot read",
)
ax.axhline(0.5, color="#555555", linestyle="--", linewidth=1)
ax.text(x[-1] + 0.45, 0.51, "chance", color="#555555", ha="right")
ax.legend(ncol=3, loc="lower left")
ax.grid(True, axis="y", color="#cccccc", linewidth=0.5)
fig.tight_layout()
plt.show()

# %% [markdown]
# The groups are small (their sizes are under the bars), so single differences are noisy, but the question is the
# trend from left to right. Sentences with many unknowns are also the longer ones, which are harder for every
# model; compare the small word vocabulary's bars with the others' within a group rather than across groups. If
# the small vocabulary loses more accuracy than the rest as its unknowns grow, that is the price of answering
# `<unk>`: the words it dropped carried sentiment that the other tokenisers could still see.

# %% [markdown]
# ## The same sentences, capitalised
#
# Users type "A gorgeous film", not "a gorgeous film". Here is the dev set again with each sentence's first letter
# upper-cased; nothing else changes. (`run.predict` again: `run.evaluate` on this DataFrame would give the same
# accuracy but write it over the run's `metrics.json`.)

# %%
capitalised = (sst2_dev["text"].str[:1].str.upper() + sst2_dev["text"].str[1:]).tolist()
print(capitalised[0])
capitalised_predictions = {name: predicted_labels(run, capitalised) for name, run in RUNS_BY_NAME.items()}
results["accuracy, capitalised"] = [np.mean(capitalised_predictions[name] == truth) for name in results.index]
results["change"] = results["accuracy, capitalised"] - results["accuracy"]
results["predictions changed %"] = [
    100 * np.mean(capitalised_predictions[name] != predictions[name]) for name in results.index
]
results[["accuracy", "accuracy, capitalised", "change", "predictions changed %"]].round(4)

# %%
fig, ax = plt.subplots(figsize=(8, 4))
y = np.arange(len(results))
for i, (name, row) in enumerate(results.iterrows()):
    ax.plot([row["accuracy"], row["accuracy, capitalised"]], [i, i], color="#888888", zorder=1)
    ax.scatter(
        row["accuracy"],
        i,
        color=COLOURS[name],
        edgecolor="black",
        s=70,
        zorder=2,
        label="as in SST-2" if i == 0 else None,
    )
    ax.scatter(
        row["accuracy, capitalised"],
        i,
        color="white",
        edgecolor=COLOURS[name],
        linewidth=2,
        s=70,
        zorder=3,
        label="first letter capitalised" if i == 0 else None,
    )
ax.set(yticks=y, yticklabels=results.index, xlabel="SST-2 dev accuracy", title="One capital letter per sentence")
ax.invert_yaxis()
ax.grid(True, axis="x", color="#cccccc", linewidth=0.5)
ax.legend(loc="lower left")
fig.tight_layout()
plt.show()

# %% [markdown]
# The word and WordPiece models lower-case their input, so the capital changes nothing for them (0 % of
# predictions changed). The character and SentencePiece models read an `<unk>` where the first letter was, and the
# byte model reads a byte that never occurred in its lower-cased training text. Each of the three now sees a token
# that was rare or absent in training, and a token absent from the training text gets no gradient: its embedding
# keeps its random initial vector ("no `<unk>`", the byte tokeniser's promise, is not "no unseen input"). How much
# that moves the predictions is in the table above. The remedy is the same as for the unknown characters on IMDB:
# normalise the text the same way in training and in use, or train on text cased like the text you will serve.

# %% [markdown]
# ## Summary
#
# - Vocabulary size and sequence length trade against each other: bytes and characters give long sequences from
#   a tiny vocabulary, words the reverse, subwords sit near word length at a vocabulary size you choose.
# - Sequence length is the number of GRU steps, but here it cost less training time than its ratio suggests; what
#   the character and byte classifiers lost at this budget was accuracy (the classifier section).
# - Unknowns come from words (and characters) the training text never had, and from normalisation that
#   differs between training and use (here: case). Subword tokenisers turn rare words into more pieces instead
#   of `<unk>`; a larger word vocabulary cannot recover words that were never seen.
# - A single seed on 872 test sentences separates models only by gaps of several standard errors; read
#   accuracy differences against the error bars.
#
# References: Socher et al. (2013), SST; Maas et al. (2011), IMDB; Schuster and Nakajima (2012) and Wu et al.
# (2016), WordPiece; Kudo and Richardson (2018), SentencePiece; Sennrich et al. (2016), subword units (BPE).
