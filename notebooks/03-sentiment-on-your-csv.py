# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Sentiment on your own CSV
#
# You have a CSV of texts with a label column, named the way *you* name things,
# and you want a classifier you can put behind an HTTP endpoint. This notebook
# goes the whole way with nlptool's public API:
#
# 1. **your CSV**: a file with your own column names, looked at with pandas;
# 2. **train** a GRU classifier on it with `nlptool.train(..., columns=...)`;
# 3. **read the run**: `history.csv` and the training curves;
# 4. **evaluate** on a held-out test split: accuracy, macro F1 and a confusion
#    matrix with scikit-learn;
# 5. **read the errors** worth reading: the ones the model was most sure of;
# 6. **fine-tune** from a pre-trained starting point (a classifier trained on
#    another, larger dataset) and compare it honestly with training from scratch
#    on the same small data;
# 7. **export** a SavedModel that takes raw strings, load it with plain
#    TensorFlow, and send it a request exactly as TF Serving's REST API
#    receives one, to nlptool's server running in this process.
#
# Runs in about 9 minutes on a 2-core CPU at full size. With
# `NLPTOOL_NOTEBOOK_SMOKE=1` it runs a tiny version of every step, which checks
# the mechanics, not accuracy.

# %% [markdown]
# ## Setup
#
# Sizes depend on `SMOKE`. Every run directory (and the CSV files we write)
# goes under `runs/notebooks/03-sentiment/` at the root of the repository;
# `overwrite=True` lets the notebook run again from the top. The data come from
# nlptool's dataset registry, which reads `NLPTOOL_DATA_DIR`.

# %%
import json
import math
import os
import re
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, confusion_matrix, f1_score

import nlptool
from nlptool import server
from nlptool.data import datasets

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log: fatal errors only (set before its import)

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"
SEED = 1234
if SMOKE:
    YOUR_TRAIN, YOUR_TEST = 300, 200  # reviews in your training CSV and in your test CSV
    START_EXAMPLES = 300  # SST-2 sentences the starting point trains on
    EPOCHS, START_EPOCHS = 1, 1
    MAX_LENGTH = 64  # tokens the classifier reads of each review
    SHAPE = ["model.units=16", "model.embedding_dim=16"]  # a tiny model (the fine-tuned run takes its shape)
else:
    YOUR_TRAIN, YOUR_TEST = 2_000, 2_000
    START_EXAMPLES = None  # all of SST-2's training sentences
    EPOCHS, START_EPOCHS = 6, 3  # at most; early stopping may end a run sooner
    MAX_LENGTH = 256
    SHAPE = []  # the sst2 config's model

ROOT = Path.cwd().resolve()
while not (ROOT / "pyproject.toml").is_file():  # the notebook runs in notebooks/; the runs go under the repo root
    if ROOT == ROOT.parent:
        raise RuntimeError("Run this notebook from inside the nlptool repository.")
    ROOT = ROOT.parent
os.chdir(ROOT)  # the paths below, and those nlptool prints, are relative to the repository
RUNS = Path("runs") / "notebooks" / "03-sentiment"
DATA = RUNS / "data"
DATA.mkdir(parents=True, exist_ok=True)

print(
    f"{'Smoke size' if SMOKE else 'Full size'}: {YOUR_TRAIN:,} training and {YOUR_TEST:,} test reviews, "
    f"up to {EPOCHS} epoch(s), {MAX_LENGTH} tokens a review; runs in {RUNS}"
)


# %% [markdown]
# A small helper for figures: a white background and explicit colours, so that
# they read the same in a light and in a dark notebook theme. nlptool draws its
# own PNGs into each run directory with matplotlib's `Agg` backend, so we show
# our figures explicitly with `display` rather than relying on the inline backend.

# %%
COLOURS = {"train": "#1f77b4", "validation": "#d62728", "scratch": "#7f7f7f", "fine-tuned": "#2ca02c"}


def figure(columns=1, width=5.0, height=3.6):
    fig, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False, facecolor="white")
    for axis in axes[0]:
        axis.set_facecolor("white")
        axis.grid(True, color="#dddddd", linewidth=0.8)
    return fig, axes[0]


def show(fig):
    fig.tight_layout()
    display(fig)
    plt.close(fig)


# %% [markdown]
# ## 1. Your CSV
#
# To keep this notebook self-contained we *make* "your" CSV from a real public
# dataset: film reviews from IMDB (Maas et al. 2011; 25,000 training and 25,000
# test reviews, balanced), read through nlptool's registry with
# `datasets.load(name, split)`. We give the file the column names a user might
# have picked (`id`, `review`, `sentiment`), with the labels spelt out as words,
# and write a training file and a separate test file of other reviews. With your
# own data you would start at the next cell with your own path.


# %%
def your_csv(split, size, path):
    """A balanced random sample of IMDB's `split`, written as a CSV with our own column names."""
    frame = datasets.load("imdb", split)  # columns text, label; label 1 = positive
    sample = frame.groupby("label").sample(n=size // 2, random_state=SEED).sample(frac=1.0, random_state=SEED)
    mine = pd.DataFrame(
        {
            "id": [f"{split}-{i}" for i in sample.index],
            "review": sample["text"].to_numpy(),
            "sentiment": sample["label"].map({0: "negative", 1: "positive"}).to_numpy(),
        }
    )
    mine.to_csv(path, index=False)
    return path


train_csv = your_csv("train", YOUR_TRAIN, DATA / "my_reviews.csv")
test_csv = your_csv("test", YOUR_TEST, DATA / "my_reviews_test.csv")
print(train_csv, "and", test_csv)

# %% [markdown]
# ## 2. Look at it with pandas
#
# Before training anything: how many rows, which labels and how balanced, how
# long the texts are, and whether anything is empty or duplicated. nlptool
# refuses an empty text or a missing label with an error naming the row, but a
# look first is cheaper.

# %%
frame = pd.read_csv(train_csv)
test_frame = pd.read_csv(test_csv)
display(frame.head(3))
print(f"{len(frame):,} training rows, {len(test_frame):,} test rows; columns {list(frame.columns)}")
print("labels in training:", frame["sentiment"].value_counts().to_dict())
print(
    "empty reviews:",
    int(frame["review"].fillna("").str.strip().eq("").sum()),
    "| duplicated reviews:",
    int(frame["review"].duplicated().sum()),
    "| test reviews also in training:",
    int(test_frame["review"].isin(frame["review"]).sum()),
)

# %% [markdown]
# The classifier reads the first `MAX_LENGTH` tokens of each text. nlptool's word
# tokeniser lowercases and splits punctuation off words, so a rough token count
# is words plus punctuation marks. How many reviews are longer than what the
# model will read?


# %%
def rough_tokens(text):
    return len(re.findall(r"\w+|[^\w\s]", text))


lengths = frame["review"].map(rough_tokens)
print("rough tokens per review:", lengths.describe(percentiles=[0.5, 0.9]).round(0).to_dict())
print(
    f"{(lengths > MAX_LENGTH).mean():.0%} of the training reviews are longer than MAX_LENGTH = {MAX_LENGTH} "
    "tokens: the model reads only their beginning"
)

# %% [markdown]
# ## 3. Train from scratch
#
# `nlptool.train` takes the data frame directly (a path to the CSV works the
# same way). `columns` maps nlptool's roles to your column names: the text is in
# `review`, the label in `sentiment`; other columns (`id`) are ignored. We give
# it the test frame too, so the run is evaluated on it as soon as it is trained.
#
# The config starts from the shipped `sst2` config (a word tokeniser, an
# embedding of 128, a bidirectional GRU of 128 units, max-and-mean pooling) with
# a few overrides for longer texts and a small data set. Without a validation
# file, a stratified 10 % of the training rows is held out for validation and
# early stopping; the checkpoint kept is the epoch with the best validation
# accuracy.
#
# On the command line the same run, from the CSV files, is
#
# ```sh
# nlptool train sentiment --train-file my_reviews.csv --test-file my_reviews_test.csv \
#     --text-column review --label-column sentiment --config sst2 \
#     --set tokenizer.max_length=256 --set training.epochs=6 ... --run-dir DIR
# ```

# %%
COLUMNS = {"text": "review", "label": "sentiment"}
OVERRIDES = SHAPE + [
    f"tokenizer.max_length={MAX_LENGTH}",
    f"training.epochs={EPOCHS}",
    "training.validation_fraction=0.1",
    "training.early_stopping_patience=2",
]

started = time.perf_counter()
scratch = nlptool.train(
    "sentiment",
    RUNS / "scratch",
    train=frame,
    test=test_frame,
    columns=COLUMNS,
    config="sst2",
    overrides=OVERRIDES,
    overwrite=True,
    verbose=2,
)
scratch_seconds = time.perf_counter() - started
print(f"trained and evaluated in {scratch_seconds:.0f} s: {scratch}")
print(
    f"test accuracy {scratch.metrics['accuracy']:.4f}, macro F1 {scratch.metrics['macro_f1']:.4f} "
    f"on {scratch.metrics['examples']:,} reviews"
)

# %% [markdown]
# ## 4. Read the run: `history.csv`
#
# The run directory holds everything about the run: the resolved `config.yaml`,
# the tokeniser, `labels.json`, checkpoints, TensorBoard logs, `metrics.json`
# and `history.csv`, one row per epoch (Keras's `CSVLogger`).

# %%
print(sorted(path.name for path in scratch.path.iterdir()))
history = pd.read_csv(scratch.path / "history.csv")
display(history.round(4))


def plot_history(history, title):
    fig, axes = figure(2)
    epochs = history["epoch"] + 1
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, history[metric], marker="o", color=COLOURS["train"], label="training")
        axis.plot(epochs, history[f"val_{metric}"], marker="s", color=COLOURS["validation"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_xticks(list(epochs))
        axis.set_title(f"{title}: {metric}")
        axis.legend()
    show(fig)


plot_history(history, "from scratch")
best = history.loc[history["val_accuracy"].idxmax()]
print(
    f"best validation accuracy {best['val_accuracy']:.4f} after epoch {int(best['epoch']) + 1} "
    f"of {len(history)}: the checkpoint the run keeps"
)

# %% [markdown]
# When the training accuracy keeps climbing while the validation accuracy stalls
# or the validation loss rises, the model is memorising its small training set;
# early stopping and the best-epoch checkpoint are what keep that from reaching
# the test set.
#
# ## 5. Evaluate on the held-out test split
#
# `run.metrics` is what training computed on the test frame (also in
# `metrics.json`). To look at individual errors we also need per-review
# predictions: `run.predict(texts)` runs the same string-in serving function that
# the export will hold, and returns the label and the probability of each class.
# From those, scikit-learn gives the confusion matrix, which should match the
# one nlptool computed.

# %%
test_texts = test_frame["review"].tolist()
y_true = test_frame["sentiment"].tolist()


def predictions(run, texts):
    rows = run.predict(texts)
    return pd.DataFrame(
        {"predicted": [row["label"] for row in rows], "p_positive": [row["probabilities"]["positive"] for row in rows]}
    )


scratch_pred = predictions(scratch, test_texts)
labels = ["negative", "positive"]
matrix = confusion_matrix(y_true, scratch_pred["predicted"], labels=labels)
print(
    "accuracy from run.predict:",
    round(accuracy_score(y_true, scratch_pred["predicted"]), 4),
    "| from run.metrics:",
    round(scratch.metrics["accuracy"], 4),
)
print("same confusion matrix as metrics.json:", matrix.tolist() == scratch.metrics["confusion_matrix"]["matrix"])

fig, (axis,) = figure(1, width=4.4, height=4.0)
axis.grid(False)
ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=axis, cmap="Blues", colorbar=False)
axis.set_title("from scratch, test split")
axis.set_xlabel("predicted label")
axis.set_ylabel("true label")
show(fig)

report = pd.DataFrame(scratch.metrics["classification_report"]).T
display(report.loc[labels, ["precision", "recall", "f1-score", "support"]].round(3))

# %% [markdown]
# The off-diagonal cells are the errors: reviews of one sentiment called the
# other. If one of them is much larger than the other, the model leans towards
# one class, which the per-class recall above shows too.
#
# ## 6. Errors worth reading
#
# Reading random errors is slow; the most instructive are the **most confident
# errors**, where the model put a high probability on the wrong label. They show
# what it has learnt to rely on: a review that praises the actors and pans the
# film, irony, a verdict that comes only in the last lines (after the
# `MAX_LENGTH` tokens it reads), or a label that is itself debatable.

# %%
errors = test_frame.assign(
    predicted=scratch_pred["predicted"],
    confidence=np.where(
        scratch_pred["predicted"] == "positive", scratch_pred["p_positive"], 1 - scratch_pred["p_positive"]
    ),
    tokens=test_frame["review"].map(rough_tokens),
)
errors = errors[errors["predicted"] != errors["sentiment"]].sort_values("confidence", ascending=False)
print(
    f"{len(errors):,} of {len(test_frame):,} test reviews misclassified; "
    f"{(errors['confidence'] > 0.9).sum():,} of them with a confidence above 0.9"
)
print(
    f"errors longer than MAX_LENGTH: {(errors['tokens'] > MAX_LENGTH).mean():.0%}, "
    f"against {(test_frame['review'].map(rough_tokens) > MAX_LENGTH).mean():.0%} of all test reviews\n"
)

for _, row in errors.head(4).iterrows():
    text = " ".join(row["review"].split())
    shown = text if len(text) <= 700 else f"{text[:450]} [...] {text[-200:]}"
    print(
        f"--- {row['id']}: labelled {row['sentiment']}, predicted {row['predicted']} "
        f"with probability {row['confidence']:.3f} (about {row['tokens']} tokens)\n{shown}\n"
    )

# %% [markdown]
# Read them with the question "what would I have needed to know to get this
# right?". Errors that hinge on the end of a long review argue for a larger
# `tokenizer.max_length` (at the cost of time); errors on sarcasm or on mixed
# reviews argue for more data or a better starting point, which is what the next
# step tries; a mislabelled example argues for fixing the CSV.
#
# ## 7. Fine-tune from a pre-trained starting point
#
# Two kinds of starting point exist in nlptool today (see the README and
# `nlptool/tasks/sentiment.py`); both are run directories you train yourself,
# not downloaded weights:
#
# - `init_from=RUN_DIR`: an earlier **sentiment run**. The new run takes its
#   tokeniser, its model shape and all its weights; the classifier head too when
#   the label set is the same (otherwise a new head). Dropout, text length and
#   training settings are the new run's.
# - `init_encoder_from=RUN_DIR`: a **language-model run** (trained without
#   labels on raw text): its tokeniser, embedding and GRU. `recipes/sentiment.py
#   --pretrain` shows that route; it costs a language-model training, more than
#   this notebook's budget.
#
# We use `init_from`. The starting point is a classifier trained on SST-2 (the
# Stanford Sentiment Treebank, Socher et al. 2013: 67,349 training sentences and
# phrases in GLUE's version), from the registry with `dataset="sst2"` and the
# shipped `sst2` config. Same subject, films, but another kind of text: one-line
# critics' snippets instead of multi-paragraph user reviews. Its labels are also
# called `negative` and `positive`, so its classifier head is kept.

# %%
started = time.perf_counter()
start_run = nlptool.train(
    "sentiment",
    RUNS / "sst2-start",
    dataset="sst2",
    config="sst2",
    overrides=SHAPE + [f"training.epochs={START_EPOCHS}"],
    max_train_examples=START_EXAMPLES,
    overwrite=True,
    verbose=2,
)
start_seconds = time.perf_counter() - started
print(
    f"starting point trained in {start_seconds:.0f} s; SST-2 {start_run.metrics['split']} accuracy "
    f"{start_run.metrics['accuracy']:.4f} on {start_run.metrics['examples']:,} sentences"
)

# %% [markdown]
# Before fine-tuning anything: how well does the SST-2 classifier do on *your*
# test reviews as it is, with no training on your data at all? It reads only as
# many tokens of each review as its own config says (`run.config`).

# %%
start_pred = predictions(start_run, test_texts)
start_accuracy = accuracy_score(y_true, start_pred["predicted"])
print(
    f"SST-2 classifier as is, reading the first {start_run.config.tokenizer.max_length} tokens of each review: "
    f"accuracy {start_accuracy:.4f} on your test reviews"
)

# %% [markdown]
# Now the fine-tuned run: the same frames, columns, config and overrides as the
# run from scratch; the only difference is `init_from`. The run's `config.yaml`
# records the shape it took from the starting point.

# %%
started = time.perf_counter()
tuned = nlptool.train(
    "sentiment",
    RUNS / "fine-tuned",
    train=frame,
    test=test_frame,
    columns=COLUMNS,
    config="sst2",
    overrides=OVERRIDES,
    init_from=start_run.path,
    overwrite=True,
    verbose=2,
)
tuned_seconds = time.perf_counter() - started
tuned_history = pd.read_csv(tuned.path / "history.csv")
tuned_pred = predictions(tuned, test_texts)
print(f"trained and evaluated in {tuned_seconds:.0f} s; test accuracy {tuned.metrics['accuracy']:.4f}")
print(
    "taken from the starting point:",
    tuned.config.tokenizer.kind,
    "tokeniser of",
    f"{tuned.config.tokenizer.vocab_size:,} ids,",
    tuned.config.model,
)
print("this run's own:", f"max_length={tuned.config.tokenizer.max_length},", tuned.config.training)

# %% [markdown]
# ### The comparison
#
# Same training reviews, same validation reviews (the same seeded 10 %), same
# test reviews, same config and epoch budget. The table gives each model's test
# accuracy; the last lines count the test reviews on which the two trained
# models disagree, with an exact McNemar test, because two accuracies on a
# couple of thousand reviews can differ by chance.

# %%
table = pd.DataFrame(
    [
        (
            "SST-2 classifier as is",
            "-",
            start_accuracy,
            f1_score(y_true, start_pred["predicted"], average="macro"),
            np.nan,
            "-",
            start_seconds,
        ),
        (
            f"from scratch on your {len(frame):,} reviews",
            "random weights",
            scratch.metrics["accuracy"],
            scratch.metrics["macro_f1"],
            history["val_accuracy"].max(),
            len(history),
            scratch_seconds,
        ),
        (
            f"fine-tuned on your {len(frame):,} reviews",
            "the SST-2 run",
            tuned.metrics["accuracy"],
            tuned.metrics["macro_f1"],
            tuned_history["val_accuracy"].max(),
            len(tuned_history),
            tuned_seconds,
        ),
    ],
    columns=["model", "starts from", "test accuracy", "test macro F1", "best val. accuracy", "epochs", "seconds"],
)
display(table.round({"test accuracy": 4, "test macro F1": 4, "best val. accuracy": 4, "seconds": 0}))

right_scratch = scratch_pred["predicted"].to_numpy() == np.array(y_true)
right_tuned = tuned_pred["predicted"].to_numpy() == np.array(y_true)
only_tuned, only_scratch = int((right_tuned & ~right_scratch).sum()), int((right_scratch & ~right_tuned).sum())
n = only_tuned + only_scratch
p_value = min(1.0, 2 * sum(math.comb(n, k) for k in range(min(only_tuned, only_scratch) + 1)) / 2**n) if n else 1.0
print(
    f"right only when fine-tuned: {only_tuned}; right only from scratch: {only_scratch}; "
    f"exact McNemar p = {p_value:.3g}"
)
difference = tuned.metrics["accuracy"] - scratch.metrics["accuracy"]
verdict = "more" if difference > 0 else "less" if difference < 0 else "as"
print(
    f"On these {len(test_frame):,} test reviews, the fine-tuned model is {abs(difference) * 100:.1f} points "
    f"{verdict} accurate than the one from scratch"
    + (
        " (no difference)"
        if difference == 0
        else ", a difference unlikely to be chance (p < 0.05)."
        if p_value < 0.05
        else ", a difference within what chance gives on this test set (p >= 0.05)."
    )
)

fig, (axis,) = figure(1, width=5.5)
for name, frame_history in (("scratch", history), ("fine-tuned", tuned_history)):
    axis.plot(frame_history["epoch"] + 1, frame_history["val_accuracy"], marker="o", color=COLOURS[name], label=name)
axis.set_xlabel("epoch")
axis.set_ylabel("validation accuracy")
axis.set_title("same data, two starting points")
axis.legend()
show(fig)

# %% [markdown]
# How to read this: a starting point helps most when your data are few and its
# vocabulary and sense of sentiment carry over. Here the starting point brings
# the vocabulary of SST-2 (its tokeniser is kept, so words of your reviews that
# SST-2 never saw are unknown to the fine-tuned model) and a notion of
# sentiment learnt from short sentences; your reviews bring length and a
# different style. The numbers above say whether that trade paid off at this
# size. Knobs worth trying when it did not: a lower learning rate for the
# fine-tuning run (`training.learning_rate=0.0005`), more of your data, or a
# starting point trained on text like yours (`init_encoder_from` with a language
# model on your own unlabelled texts).
#
# ## 8. Export
#
# We export the run with the better **validation** accuracy. Choosing by the
# test accuracy would make the test split part of training, and its numbers an
# overestimate. `run.export()` writes a numbered version (`export/1`, then
# `export/2`, ...) as TF Serving expects, and checks that it loads.

# %%
chosen = tuned if tuned_history["val_accuracy"].max() > history["val_accuracy"].max() else scratch
export_dir = chosen.export()
print(f"exporting {chosen.path.name}: {export_dir}")
print(sorted(path.name for path in export_dir.iterdir()))

# %% [markdown]
# ## 9. Load the export with plain TensorFlow
#
# The export needs TensorFlow, not nlptool: the tokeniser runs inside the graph,
# so the model takes the raw strings a client sends. `serving_default` takes a
# batch of strings named `text` and returns `label` and `probabilities`;
# `class_names` says which column of `probabilities` is which class.

# %%
import tensorflow as tf  # noqa: E402 (imported here to show that the export needs nothing else)

loaded = tf.saved_model.load(str(export_dir))
serving = loaded.signatures["serving_default"]
print("inputs: ", serving.structured_input_signature[1])
print("outputs:", serving.structured_outputs)
class_names = [name.decode() for name in loaded.signatures["class_names"]()["class_names"].numpy()]
print("class_names:", class_names)

samples = [
    "A gorgeous, funny and deeply moving film. I'd watch it again tomorrow.",
    "Two hours I will never get back. The plot is thin and the jokes are tired.",
    test_texts[0],
]
outputs = serving(text=tf.constant(samples))
for text, label, probabilities in zip(samples, outputs["label"].numpy(), outputs["probabilities"].numpy()):
    print(f"{label.decode():9s} {np.round(probabilities, 3)}  {text[:70]}")
same = np.allclose(
    outputs["probabilities"].numpy(),
    [[row["probabilities"][c] for c in class_names] for row in chosen.predict(samples)],
    atol=1e-5,
)
print("the export answers as the run does:", same)

# %% [markdown]
# ## 10. A request as a server receives it
#
# `nlptool serve runs/.../export` serves the export over HTTP with TF Serving's
# REST API, so a client written against it works unchanged against TF Serving.
# Here we build the same application in this process with
# `nlptool.server.ServedModel` and `create_app`, and send it requests through
# Starlette's `TestClient`: no port, no network, the same code path as a real
# request. The model name in the URL is the task's, `sentiment`. (The `with`
# block keeps one event loop for all the requests, as a running server has.)
#
# Two request formats, as in TF Serving: the row format
# `{"instances": [...]}` (one entry per text) and the columnar format
# `{"inputs": {"text": [...]}}`.

# %%
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")  # it still works
from starlette.testclient import TestClient  # noqa: E402 (Starlette's client for an app in this process)

served = server.ServedModel(export_dir.parent)  # the model folder: the server takes its highest version
app = server.create_app(served)
url = f"/v1/models/{served.name}"

with TestClient(app) as client:
    print("GET", url, "->", client.get(url).json())

    request = {"instances": samples[:2]}
    response = client.post(f"{url}:predict", json=request)
    print(f"\nPOST {url}:predict {json.dumps(request)}\n-> {response.status_code}")
    print(json.dumps(response.json(), indent=2))

    request = {"signature_name": "serving_default", "inputs": {"text": ["not bad at all"]}}
    response = client.post(f"{url}:predict", json=request)
    print(f"\nPOST {url}:predict {json.dumps(request)}\n-> {response.status_code} {response.json()}")

    request = {"instances": [42]}  # a number where the signature wants a string
    response = client.post(f"{url}:predict", json=request)
    print(f"\nPOST {url}:predict {json.dumps(request)}\n-> {response.status_code} {response.json()}")

# %% [markdown]
# The last request shows what a client gets for a malformed request: a 400 with
# TF Serving's `{"error": ...}` body, checked before the model runs.
#
# ## Where next
#
# - Serve it for real: `nlptool serve runs/notebooks/03-sentiment/fine-tuned/export`
#   (or the `scratch` one, whichever was exported above), or TF Serving's Docker
#   image on the same folder; request limits and batching: `docs/serving.md`.
# - Every config key for sentiment runs, with defaults: `docs/configuration.md`;
#   the sentiment guide (`docs/guide/sentiment.md`) covers weight averaging
#   (`training.ema_momentum`) and adversarial training, both of which help
#   fine-tuning in the benchmarks.
# - Evaluate a run on another file later: `nlptool.load(run_dir).evaluate(test_file=..., columns=COLUMNS)`.
