# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Translation with attention: Multi30k, beam search, BLEU, chrF and heat maps
#
# nlptool's translation task is RNNsearch (Bahdanau, Cho and Bengio 2014) on
# nlptool's GRU: a bidirectional GRU reads the source sentence, and at every
# output step the decoder *attends*: it weighs every source position, and reads
# the weighted sum of the encoder's states beside its own. Those weights are a
# soft alignment between the output and the source, and they can be drawn. This
# notebook trains such a model from scratch and looks at what it does:
#
# 1. **the data**: Multi30k, German image descriptions with their English
#    translations, read through nlptool's dataset registry;
# 2. **train** the attention encoder-decoder de -> en with `nlptool.train`,
#    bounded by a time budget, and read its training curves from `history.csv`;
# 3. **score** the test translations with sacreBLEU: corpus BLEU and chrF, and
#    chrF sentence by sentence, to find the good and the bad translations;
# 4. **beam search against greedy decoding**: BLEU, chrF and time at several beam
#    widths, and sentences on which they disagree;
# 5. **attention heat maps** (source pieces x output pieces) of two good and two
#    bad translations, and what the alignment looks like over the whole test set.
#
# Runs in about 18 minutes on a 2-core CPU at full size, 16 of them training.
# With `NLPTOOL_NOTEBOOK_SMOKE=1` it runs a tiny version of every step in under a
# minute, which checks the mechanics, not the quality: a model trained for
# seconds translates badly, and its heat maps are close to uniform.

# %% [markdown]
# ## Setup
#
# Sizes depend on `SMOKE`. The run directory goes under
# `runs/notebooks/05-translation/` at the root of the repository, and
# `overwrite=True` lets the notebook run again from the top. The data come from
# nlptool's dataset registry, which reads `NLPTOOL_DATA_DIR`.

# %%
import os
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log: fatal errors only (set before its import)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sacrebleu  # noqa: E402
from IPython.display import display  # noqa: E402

import nlptool  # noqa: E402
from nlptool.data import datasets  # noqa: E402

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"
SOURCE, TARGET = "de", "en"
if SMOKE:
    TRAIN_PAIRS, VALIDATION_PAIRS, TEST_PAIRS = 256, 64, 30  # None: the whole split
    MODEL = [
        "tokenizer.vocab_size=300",
        "model.embedding_dim=32",
        "model.encoder_units=32",
        "model.decoder_units=64",
        "model.attention_units=64",
    ]
    TRAINING = ["training.epochs=1", "training.batch_size=128"]  # few batch shapes: little tracing
    BEAM_WIDTHS = [1, 4]
else:
    TRAIN_PAIRS, VALIDATION_PAIRS, TEST_PAIRS = None, None, None
    # half the width of the shipped `multi30k` config, so that several epochs fit into the time budget
    MODEL = [
        "model.embedding_dim=128",
        "model.encoder_units=128",
        "model.decoder_units=256",
        "model.attention_units=256",
        "model.dropout=0.2",
    ]
    TRAINING = ["training.epochs=8", "training.max_minutes=20", "training.early_stopping_patience=2"]
    BEAM_WIDTHS = [1, 4, 8]

ROOT = Path.cwd().resolve()
while not (ROOT / "pyproject.toml").is_file():  # the notebook runs in notebooks/; the runs go under the repo root
    if ROOT == ROOT.parent:
        raise RuntimeError("Run this notebook from inside the nlptool repository.")
    ROOT = ROOT.parent
os.chdir(ROOT)  # the paths below, and those nlptool prints, are relative to the repository
RUNS = Path("runs") / "notebooks" / "05-translation"
RUN_DIR = RUNS / "de-en"
if not os.environ.get("NLPTOOL_DATA_DIR"):
    print("NLPTOOL_DATA_DIR is not set: datasets are looked for in the cache (and downloaded if missing).")

print("Smoke size" if SMOKE else "Full size")
print(f"{SOURCE} -> {TARGET}; overrides {MODEL + TRAINING}; run directory {RUN_DIR}")

# %% [markdown]
# A small helper for figures: a white background and explicit colours, so that
# they read the same in a light and in a dark notebook theme.

# %%
COLOURS = {"train": "#1f77b4", "validation": "#d62728", "beam": "#2ca02c", "greedy": "#ff7f0e", "grey": "#7f7f7f"}


def figure(columns=1, rows=1, width=5.0, height=3.6):
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    fig.patch.set_facecolor("white")
    for axis in axes.flat:
        axis.set_facecolor("white")
        axis.grid(True, color="#dddddd", linewidth=0.8)
    return fig, list(axes.flat)


def show(fig):
    fig.tight_layout()
    plt.show()


# %% [markdown]
# ## 1. The data: Multi30k
#
# Multi30k (Elliott et al. 2016) is the Flickr30k image descriptions with
# professional German (and French) translations: 29,000 training, 1,014
# validation and 1,000 test sentences (`test_2016_flickr`). The registry reads
# each split into one column per language, line *i* of each language aligned.
# We translate German into English, the direction most results on Multi30k are
# reported in.

# %%
splits = {name: datasets.load("multi30k", name) for name in ("train", "val", "test_2016_flickr")}
for name, frame in splits.items():
    print(f"{name:17s} {len(frame):6,} sentence triples, columns {list(frame.columns)}")

with pd.option_context("display.max_colwidth", 90):
    display(splits["train"][[SOURCE, TARGET]].head(5))

# %% [markdown]
# The sentences are short, literal descriptions of a picture: a narrow domain
# with a small vocabulary, which is why a model trained in minutes on a CPU can
# translate it at all. Lengths in words (split at spaces), and how many words a
# German sentence takes in English:

# %%
train = splits["train"]
words = pd.DataFrame({language: train[language].str.split().str.len() for language in (SOURCE, TARGET)})
print(words.describe(percentiles=[0.5, 0.9, 0.99]).round(1).T)
print(
    f"English words per German word: {words[TARGET].sum() / words[SOURCE].sum():.2f} overall; "
    f"correlation of the two lengths {words[SOURCE].corr(words[TARGET]):.2f}"
)

fig, (axis,) = figure(width=6.0)
bins = np.arange(0, words.max().max() + 2) - 0.5
for language, colour in ((SOURCE, COLOURS["train"]), (TARGET, COLOURS["validation"])):
    axis.hist(words[language], bins=bins, color=colour, alpha=0.55, label=language)
axis.set_xlabel("words per sentence")
axis.set_ylabel("training sentences")
axis.set_title("Multi30k train: sentence lengths")
axis.legend()
show(fig)

# %% [markdown]
# ## 2. Train the attention model
#
# `nlptool.train("translation", ...)` learns one SentencePiece model per
# language, builds the encoder-decoder and trains it teacher-forced with a
# label-smoothed loss, keeping the checkpoint with the best validation
# perplexity; then it evaluates on the test pairs it was given. We pass the
# three splits as data frames, with `columns` naming the source and the target
# column, so that the smoke test can take small slices of them; at full size
# they are the whole splits, the same as
#
# ```sh
# nlptool train translation --dataset multi30k --source-lang de --target-lang en \
#     --config multi30k --set model.decoder_units=256 ... --run-dir DIR
# ```
#
# The config is the shipped `multi30k` config (SentencePiece 8k a side, a
# bidirectional GRU encoder of 2 x 256, a GRU decoder of 512, Bahdanau attention
# of 512, beam search of width 5), made half as wide here so that it gets
# through three epochs within `training.max_minutes` (about five minutes each).
# The budget is checked at the end of each epoch: training stops when another epoch would pass it.
# The shipped config at full width with 55 minutes is what `docs/benchmarks.md`
# reports; this notebook trades quality for time.


# %%
def head(frame, size):
    return frame if size is None else frame.head(size)


train_pairs = head(splits["train"], TRAIN_PAIRS)
validation_pairs = head(splits["val"], VALIDATION_PAIRS)
test_pairs = head(splits["test_2016_flickr"], TEST_PAIRS)

started = time.perf_counter()
run = nlptool.train(
    "translation",
    RUN_DIR,
    train=train_pairs,
    validation=validation_pairs,
    test=test_pairs,
    columns={"source": SOURCE, "target": TARGET},
    config="multi30k",
    overrides=MODEL + TRAINING,
    overwrite=True,
    verbose=2,
)
train_seconds = time.perf_counter() - started
print(f"trained and evaluated in {train_seconds / 60:.1f} min: {run}")
print("model:", run.config.model)

# %% [markdown]
# ### The training curves
#
# `history.csv` has one row per epoch: the label-smoothed `loss`, the plain
# negative log-likelihood `nll` per target piece and its `perplexity`, on the
# training batches (with dropout) and on the validation pairs.

# %%
history = pd.read_csv(run.path / "history.csv")
display(history.round(3))

fig, axes = figure(2)
epochs = history["epoch"] + 1
for axis, metric in zip(axes, ("loss", "perplexity")):
    axis.plot(epochs, history[metric], marker="o", color=COLOURS["train"], label="training")
    axis.plot(epochs, history[f"val_{metric}"], marker="s", color=COLOURS["validation"], label="validation")
    axis.set_xlabel("epoch")
    axis.set_xticks(list(epochs))
    axis.set_title(metric)
    axis.legend()
axes[1].set_yscale("log")
show(fig)

best = history.loc[history["val_perplexity"].idxmin()]
print(
    f"{len(history)} epoch(s) in {train_seconds / 60:.1f} min (training and test evaluation); "
    f"best validation perplexity {best['val_perplexity']:.2f} after epoch {int(best['epoch']) + 1}: "
    "the checkpoint the run keeps"
)
planned = run.config.training.epochs
still_falling = len(history) < 2 or history["val_perplexity"].iloc[-1] < history["val_perplexity"].iloc[-2]
if len(history) < planned:
    print(
        f"stopped after {len(history)} of at most {planned} epochs, with the validation perplexity "
        + ("still falling: the time budget ended training, not the model" if still_falling else "no longer falling")
    )
else:
    print(f"ran all {planned} epoch(s) of the config")

# %% [markdown]
# A validation perplexity of *p* means the model is, on average, as unsure of
# the next English piece as a uniform choice among *p* pieces. A model whose
# validation perplexity is still falling when the budget ends it would gain
# from more time; the shipped config's run in `docs/benchmarks.md` trains for
# nine epochs.
#
# ## 3. BLEU and chrF on the test set
#
# The run evaluated itself on the test pairs: `run.metrics` (also
# `metrics.json`) holds sacreBLEU's corpus BLEU and chrF of the beam-search
# output (at the config's width) and of greedy output, detokenised and scored
# against the raw references, and the perplexity of the references. (Its
# `seconds` include setting up each decoding graph on first use; section 4
# times decoding on its own.)
# BLEU counts the output's word n-grams (up to 4) found in the reference, with a
# penalty for output shorter than the reference; chrF is an F-score of
# character n-grams (up to 6), kinder to a right word with a wrong ending and
# more stable on single sentences.

# %%
metrics = run.metrics
table = pd.DataFrame(
    [
        {
            "decoding": f"beam {metrics['beam']['beam_width']}",
            "BLEU": metrics["beam"]["bleu"],
            "chrF": metrics["beam"]["chrf"],
            "seconds": metrics["beam"]["seconds"],
        },
        {
            "decoding": "greedy",
            "BLEU": metrics["greedy"]["bleu"],
            "chrF": metrics["greedy"]["chrf"],
            "seconds": metrics["greedy"]["seconds"],
        },
    ]
).set_index("decoding")
print(f"{metrics['pairs']:,} test pairs; perplexity of the references {metrics['perplexity']:.2f}")
display(table.round(2))
print("BLEU signature:", metrics["beam"]["bleu_signature"])

# %% [markdown]
# Every translation is in `translations.tsv` (source, reference, beam output,
# greedy output). Scoring it again with sacreBLEU gives the same corpus figures,
# and sentence by sentence it tells us which translations are good and which are
# bad. Sentence-level BLEU is unreliable (one missing 4-gram can make it zero),
# so we rank sentences by chrF.

# %%
outputs = pd.read_csv(run.path / "translations.tsv", sep="\t", quoting=3, keep_default_na=False, dtype=str)
references = outputs["reference"].tolist()
for name in ("beam", "greedy"):
    bleu = sacrebleu.corpus_bleu(outputs[name].tolist(), [references])
    chrf = sacrebleu.corpus_chrf(outputs[name].tolist(), [references])
    print(
        f"{name:6s} corpus BLEU {bleu.score:5.2f}, chrF {chrf.score:5.2f}, "
        f"length ratio {bleu.sys_len / bleu.ref_len:.2f}; matches metrics.json: "
        f"{np.isclose(bleu.score, metrics[name]['bleu']) and np.isclose(chrf.score, metrics[name]['chrf'])}"
    )
    outputs[f"{name}_chrf"] = [
        sacrebleu.sentence_chrf(hypothesis, [reference]).score
        for hypothesis, reference in zip(outputs[name], references)
    ]
outputs["source_words"] = outputs["source"].str.split().str.len()

# %% [markdown]
# How the sentence scores spread, and how they change with the length of the
# source. An encoder-decoder without attention, which squeezes the whole source
# into one vector, degrades quickly as sentences grow longer (Cho et al. 2014);
# attention was introduced to remedy that. Multi30k has few long sentences, but
# the right-hand panel shows whether quality still falls with length here.

# %%
fig, axes = figure(2)
axes[0].hist(outputs["beam_chrf"], bins=np.linspace(0, 100, 21), color=COLOURS["beam"], alpha=0.8)
axes[0].axvline(outputs["beam_chrf"].median(), color="black", linestyle="--", label="median")
axes[0].set_xlabel("sentence chrF (beam)")
axes[0].set_ylabel("test sentences")
axes[0].set_title("sentence-level chrF")
axes[0].legend()

length_bins = pd.cut(outputs["source_words"], [0, 8, 11, 14, 18, 100], labels=["<=8", "9-11", "12-14", "15-18", ">18"])
by_length = outputs.groupby(length_bins, observed=True)[["beam_chrf", "greedy_chrf"]].mean()
counts = outputs.groupby(length_bins, observed=True).size()
x = np.arange(len(by_length))
axes[1].bar(x - 0.2, by_length["beam_chrf"], width=0.4, color=COLOURS["beam"], label="beam")
axes[1].bar(x + 0.2, by_length["greedy_chrf"], width=0.4, color=COLOURS["greedy"], label="greedy")
axes[1].set_xticks(x, [f"{label}\n({count})" for label, count in zip(by_length.index, counts)])
axes[1].set_xlabel("German words (test sentences)")
axes[1].set_ylabel("mean sentence chrF")
axes[1].set_title("quality by source length")
axes[1].legend()
show(fig)
display(by_length.assign(sentences=counts).round(1))

# %% [markdown]
# ## 4. Beam search against greedy decoding
#
# Greedy decoding takes the most probable piece at every step. Beam search keeps
# the `beam_width` most probable partial translations and at the end picks the
# best under the GNMT length penalty (`decoding.length_penalty`, 0.6 here),
# which keeps it from preferring short outputs. Both run inside the TensorFlow
# graph, so the exported SavedModel decodes exactly as the run does.
#
# We decode from here on with the export, the form in which a model is served:
# `run.export()` writes it (`export/1` in the run directory) and
# `nlptool.load` loads it with `tf.saved_model.load`. Its `predict(texts,
# beam_width=...)` or `greedy=True` is the run's `predict`, and its
# `signatures` are the SavedModel's, which section 5 needs.

# %%
started = time.perf_counter()
export_dir = run.export()
exported = nlptool.load(export_dir)
print(f"exported to {export_dir} and loaded in {time.perf_counter() - started:.0f} s: {exported}")
print("signatures:", sorted(exported.signatures))

# %% [markdown]
# Each decoding is timed over the same test sentences, after an untimed call
# of each kind (a first call sets up the graph). A beam of width 1 is greedy
# search by another route, and should give the same output.

# %%
sources = outputs["source"].tolist()
exported.predict(sources[:2], greedy=True)  # untimed warm-up
exported.predict(sources[:2], beam_width=2)
decodings = {}
timings = {}
for label, options in [("greedy", {"greedy": True})] + [(f"beam {w}", {"beam_width": w}) for w in BEAM_WIDTHS]:
    started = time.perf_counter()
    rows = exported.predict(sources, **options)
    timings[label] = time.perf_counter() - started
    decodings[label] = [row["text"] for row in rows]

sweep = []
for label, hypotheses in decodings.items():
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    sweep.append(
        {
            "decoding": label,
            "BLEU": bleu.score,
            "chrF": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            "length ratio": bleu.sys_len / bleu.ref_len,
            "seconds": timings[label],
            "sentences/s": len(sources) / timings[label],
            "same as greedy": np.mean([a == b for a, b in zip(hypotheses, decodings["greedy"])]),
        }
    )
sweep = pd.DataFrame(sweep).set_index("decoding")
display(sweep.round(3))
print(
    f"beam 1 and greedy agree on {sweep.loc['beam 1', 'same as greedy']:.0%} of the sentences; "
    f"the widest beam costs {sweep['seconds'].iloc[-1] / sweep.loc['greedy', 'seconds']:.1f} x greedy's time"
)

fig, axes = figure(2)
widths = [int(label.split()[1]) for label in sweep.index if label.startswith("beam")]
beams = sweep.loc[[f"beam {w}" for w in widths]]
for axis, metric in zip(axes, ("BLEU", "seconds")):
    axis.plot(widths, beams[metric], marker="o", color=COLOURS["beam"], label="beam search")
    axis.axhline(sweep.loc["greedy", metric], color=COLOURS["greedy"], linestyle="--", label="greedy")
    axis.set_xlabel("beam width")
    axis.set_xticks(widths)
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} on {len(sources):,} test sentences")
    axis.legend()
show(fig)

# %% [markdown]
# For comparison, the shipped config's full run in `docs/benchmarks.md` gains
# 1.5 BLEU with a beam of 5 over greedy decoding; the table above gives this
# run's figures, and what each width costs in time. Where do greedy output and
# the widest beam differ, and which is closer to the reference?

# %%
widest = f"beam {BEAM_WIDTHS[-1]}"
compare = pd.DataFrame(
    {
        "source": sources,
        "reference": references,
        "greedy": decodings["greedy"],
        widest: decodings[widest],
    }
)
compare["greedy chrF"] = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(compare["greedy"], references)]
compare[f"{widest} chrF"] = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(compare[widest], references)]
compare["gain"] = compare[f"{widest} chrF"] - compare["greedy chrF"]
differ = compare[compare["greedy"] != compare[widest]]
print(
    f"{len(differ):,} of {len(compare):,} sentences differ; the beam's chrF is higher on {(differ['gain'] > 0).sum()}, "
    f"lower on {(differ['gain'] < 0).sum()}, equal on {(differ['gain'] == 0).sum()}"
)
for title, rows in (
    ("the beam helps most", differ.nlargest(2, "gain")),
    ("greedy is better", differ.nsmallest(2, "gain")),
):
    print(f"\n=== {title}")
    for _, row in rows.iterrows():
        print(f"source:    {row['source']}\nreference: {row['reference']}")
        print(f"greedy:    {row['greedy']}  (chrF {row['greedy chrF']:.1f})")
        print(f"{widest + ':':10s} {row[widest]}  (chrF {row[f'{widest} chrF']:.1f})\n")

# %% [markdown]
# Beam search is a better *search*, not a better *model*: it finds
# translations the model scores higher, which are not always closer to the
# reference. With `n_best`, `predict` returns the whole list of finished
# hypotheses with their length-penalised log-probabilities; here for the first
# test sentence:

# %%
(row,) = exported.predict([sources[0]], beam_width=BEAM_WIDTHS[-1], n_best=min(4, BEAM_WIDTHS[-1]))
print(f"source:    {sources[0]}\nreference: {references[0]}")
for text, score in row["n_best"]:
    print(f"{score:9.3f}  {text}")

# %% [markdown]
# ## 5. Attention heat maps
#
# The export has an `attention` signature: given a source and a
# translation of it, it runs the decoder teacher-forced on that translation and
# returns the attention weights, one row per output piece (the last is `</s>`)
# and one column per source piece (`</s>` last too), with the SentencePiece
# pieces they belong to. Each row sums to one. (`nlptool translate RUN
# "..." --plot-attention FILE.png` draws the same weights.)
#
# The translation is re-read as text, so its pieces are those SentencePiece
# gives the detokenised output; nearly always the ones the decoder produced.

# %%
import tensorflow as tf  # noqa: E402 (the export's signatures take tensors)

attention_signature = exported.signatures["attention"]


def attention(source, translation):
    """(weights: output pieces x source pieces, source pieces, output pieces) of one sentence."""
    result = attention_signature(source=tf.constant([source]), target=tf.constant([translation]))
    source_pieces = [piece.decode("utf-8") for piece in result["source_pieces"].numpy()[0]]
    output_pieces = [piece.decode("utf-8") for piece in result["target_pieces"].numpy()[0]]
    weights = result["weights"].numpy()[0][: len(output_pieces), : len(source_pieces)]
    return weights, source_pieces, output_pieces


weights, source_pieces, output_pieces = attention(sources[0], decodings[widest][0])
print("source pieces:", source_pieces)
print("output pieces:", output_pieces)
print("weights", weights.shape, "; each row sums to", np.round(weights.sum(axis=1)[:3], 4), "...")

# %% [markdown]
# ### Two good and two bad translations
#
# Chosen by sentence chrF of the beam output, among sentences of 6 to 16
# German words so that the heat maps stay legible: the two best and the two
# worst. Under each map, the same weights in words: for every output piece the
# source piece it reads most, with that weight, and the source pieces that the
# whole output reads less than 0.3 of in total.

# %%
readable = outputs[outputs["source_words"].between(6, 16)]
readable = readable if len(readable) >= 4 else outputs  # a smoke-size test set may have too few
good = readable.nlargest(2, "beam_chrf")
bad = readable.nsmallest(2, "beam_chrf")


def label(piece):
    return piece or "\u2581"  # an empty piece (a lone word boundary) shows as the SentencePiece space


def heat_map(source, translation, title):
    """Draws the attention of one translation; returns its weights and pieces."""
    weights, source_pieces, output_pieces = attention(source, translation)
    size = (min(2.5 + 0.42 * len(source_pieces), 16), min(1.8 + 0.3 * len(output_pieces), 16))
    fig, axis = plt.subplots(figsize=size, layout="constrained")
    fig.patch.set_facecolor("white")
    image = axis.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(source_pieces)), [label(p) for p in source_pieces], rotation=60, ha="right", fontsize=9)
    axis.set_yticks(range(len(output_pieces)), [label(p) for p in output_pieces], fontsize=9)
    axis.set_xlabel("German source pieces")
    axis.set_ylabel("English output pieces")
    axis.set_title(title, fontsize=10)
    fig.colorbar(image, ax=axis, fraction=0.04, label="attention weight")
    plt.show()
    return weights, source_pieces, output_pieces


def reading(weights, source_pieces, output_pieces):
    """What a heat map says, in words: the source piece each output piece reads most, and the unread ones."""
    links = [
        f"{label(out)}<-{label(source_pieces[j])} {weights[t, j]:.2f}"
        for t, (out, j) in enumerate(zip(output_pieces, weights.argmax(axis=1)))
    ]
    unread = [label(p) for p, total in zip(source_pieces[:-1], weights[:, :-1].sum(axis=0)) if total < 0.3]
    return "  most read: " + " | ".join(links) + f"\n  source pieces read less than 0.3 in all: {unread or 'none'}"


for kind, rows in (("good", good), ("bad", bad)):
    for _, row in rows.iterrows():
        title = f"{kind}: sentence chrF {row['beam_chrf']:.1f}\nsource: {row['source']}\nreference: {row['reference']}"
        found = heat_map(row["source"], row["beam"], title)
        print(f"[{kind}] {row['source']}\n  output:    {row['beam']}\n  reference: {row['reference']}")
        print(reading(*found) + "\n")

# %% [markdown]
# How to read them: a dark cell at (output piece *t*, source piece *j*) means
# that while producing piece *t* the decoder read mostly the encoder's state at
# *j*. A trained model on a language pair as close as German and English draws a
# rough diagonal, with detours where the word order differs (a German verb at
# the end of a clause, a separable prefix such as *steht ... auf*). Several
# output pieces reading one source piece are a word that SentencePiece splits
# differently in the two languages, or a compound (*Fußballspieler*, *football
# player*). A column that no row reads is a source word left untranslated; a
# row spread thinly over the whole sentence is a piece the decoder produced
# without looking anywhere in particular, such as an article, or a guess.
# Whether the bad translations above show such gaps or blurred rows, and the
# good ones a clean diagonal, is the question the next cell asks of the whole
# test set rather than of four sentences.
#
# ### The alignment over the whole test set
#
# For every test sentence and its beam output, three numbers from the attention
# weights:
#
# - **sharpness**: the mean over output pieces of the largest weight in the row
#   (1: each output piece reads one source piece; 1/*n*: it reads all *n* evenly);
# - **neglected**: the share of source pieces (not counting `</s>`) whose column
#   sums to less than 0.3, words the decoder barely read;
# - **off-diagonal**: how far, on average, the most-read source position of
#   each output piece lies from the diagonal, both positions taken as a share of
#   their sentence's length (0: a perfect diagonal; a decoder that keeps reading
#   one place scores high).
#
# We compare the quarter of sentences with the best chrF with the quarter with
# the worst, and give the rank correlation of each with sentence chrF.


# %%
def alignment_numbers(source, translation):
    weights, source_pieces, _ = attention(source, translation)
    columns = weights[:, :-1].sum(axis=0) if weights.shape[1] > 1 else weights.sum(axis=0)
    rows, cols = weights.shape
    peaks = weights.argmax(axis=1) / max(cols - 1, 1)
    return {
        "sharpness": weights.max(axis=1).mean(),
        "neglected": (columns < 0.3).mean(),
        "off-diagonal": np.abs(peaks - np.arange(rows) / max(rows - 1, 1)).mean(),
        "source pieces": len(source_pieces),
    }


started = time.perf_counter()
alignment = pd.DataFrame([alignment_numbers(s, t) for s, t in zip(outputs["source"], outputs["beam"])])
alignment["chrF"] = outputs["beam_chrf"].to_numpy()
print(f"attention of {len(alignment):,} sentences in {time.perf_counter() - started:.0f} s")

low, high = alignment["chrF"].quantile([0.25, 0.75])
groups = pd.DataFrame(
    {
        "best quarter": alignment[alignment["chrF"] >= high].mean(),
        "worst quarter": alignment[alignment["chrF"] <= low].mean(),
        "rank correlation with chrF": alignment.corr(method="spearman")["chrF"],
    }
).drop(index="chrF")
display(groups.round(3))

fig, axes = figure(3, width=4.2)
for axis, measure in zip(axes, ("sharpness", "neglected", "off-diagonal")):
    axis.scatter(alignment[measure], alignment["chrF"], s=10, alpha=0.5, color=COLOURS["beam"])
    axis.set_xlabel(measure)
    axis.set_ylabel("sentence chrF (beam)")
    axis.set_title(f"{measure}: Spearman {groups.loc[measure, 'rank correlation with chrF']:.2f}")
show(fig)

for measure, cleaner in (("sharpness", "higher"), ("neglected", "lower"), ("off-diagonal", "lower")):
    best_q, worst_q = groups.loc[measure, "best quarter"], groups.loc[measure, "worst quarter"]
    if np.isclose(best_q, worst_q):
        verdict = "no difference between the two"
    elif (best_q > worst_q) == (cleaner == "higher"):
        verdict = "the good translations align more cleanly"
    else:
        verdict = "the bad translations align more cleanly by this measure"
    rho = groups.loc[measure, "rank correlation with chrF"]
    print(
        f"{measure} ({cleaner} is cleaner): best quarter {best_q:.3f}, worst quarter {worst_q:.3f}: {verdict} "
        f"(Spearman with chrF {rho:.2f})"
    )

# %% [markdown]
# Attention is a soft alignment the model learnt because it helped it predict
# the next piece, not an alignment anyone checked: it correlates with
# translation quality without explaining it. A sharp, diagonal map can still
# come with a wrong word (the right place was read, and mistranslated), and
# the weights of a poorly trained model, such as the smoke-size one, are spread
# almost evenly, which makes every map look alike. The figures above are for
# this run; they move with the training budget.
#
# ## Where next
#
# - The full shipped config: `nlptool train translation --dataset multi30k
#   --config multi30k --run-dir runs/de-en` (about an hour on 2 cores; its
#   figures are in `docs/benchmarks.md`), then `nlptool evaluate runs/de-en
#   --beam-width 10` and `nlptool translate runs/de-en "..." --plot-attention
#   attention.png`.
# - Other knobs: `decoding.length_penalty` (0 turns the penalty off; try it with
#   the widest beam and watch the length ratio), `tokenizer.shared=true` for one
#   SentencePiece model for both languages, `model.encoder_layers=2`.
# - Serve the export written above: `nlptool serve
#   runs/notebooks/05-translation/de-en/export`; its `serving_default` takes
#   `source` strings and returns `text` and `score` (`docs/serving.md`).
# - Everything in the translation guide: `docs/guide/translation.md`.
