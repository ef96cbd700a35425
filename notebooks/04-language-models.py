# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Language models: characters, words, perplexity and decoding
#
# A language model gives every possible next token a probability, given the text so far. Trained on a corpus,
# it can score text (how surprised is it by the test set?) and continue text (what does it write after a
# prompt?). This notebook does both with nlptool's GRU language model and its public API:
#
# 1. **a character model on Tiny Shakespeare**: training curves from `history.csv`, test perplexity and bits
#    per character, against the scale of a uniform and a unigram model;
# 2. **a word model on the Penn Treebank (PTB)**: what perplexity means, and where this model's figure sits
#    between the uniform model, the unigram model and published results;
# 3. **decoding side by side**: greedy, temperature, top-k, top-p (nucleus) and beam search on the same
#    prompts, with measures computed here: the model's own log-probability per token of each output, and the
#    diversity and repetition of the outputs;
# 4. **two figures**: the effect of the temperature on likelihood and diversity, and how the loss falls with
#    the amount of context the model has read.
#
# Runs in about 4 minutes on a 2-core CPU at full size. With
# `NLPTOOL_NOTEBOOK_SMOKE=1` it runs a tiny version of every step in under a minute, which checks the
# mechanics, not the quality: the smoke-size numbers and texts are meaningless.

# %% [markdown]
# ## Setup
#
# Sizes depend on `SMOKE`. Both models are smaller than the shipped `tiny_shakespeare` and `ptb` configs (which
# are budgeted 12 and 57 minutes of training) so that the notebook fits its budget; each training is also bounded by
# `training.max_minutes`, which stops after the epoch that a further epoch would take past the budget. Run
# directories go under `runs/notebooks/04-language-models/` at the root of the repository, and `overwrite=True`
# lets the notebook run again from the top; the notebook works from the repository root, so that the paths it
# prints are relative to it. The corpora come from nlptool's dataset registry, which reads `NLPTOOL_DATA_DIR`.

# %%
import math
import os
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log: fatal errors only (set before its import)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf
from IPython.display import display

import nlptool
from nlptool.data import datasets
from nlptool.tokenizers import END_ID, PAD_ID

tf.get_logger().setLevel("ERROR")  # no retracing notices from the tokenising of the corpora

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"
if SMOKE:
    CHAR_LINES, WORD_LINES = 150, 100  # training lines of each corpus (None: all of them)
    EVAL_LINES = 30  # validation and test lines (None: the whole split)
    CHAR_OVERRIDES = ["model.units=32", "model.embedding_dim=16", "model.layers=1", "training.batch_size=8"]
    CHAR_OVERRIDES += ["training.window=50", "training.epochs=1"]
    WORD_OVERRIDES = ["model.units=32", "model.embedding_dim=32", "model.layers=1", "training.batch_size=8"]
    WORD_OVERRIDES += ["training.window=20", "training.epochs=1"]
    SEEDS = 2  # samples of each prompt with each sampling method
    WORD_NEW_TOKENS, CHAR_NEW_TOKENS = 15, 40
    TEMPERATURES = [0.5, 1.0, 1.5]
    POSITIONS = 40  # context positions in the loss-by-position figure
else:
    CHAR_LINES, WORD_LINES = 18_000, 20_000  # about half of each training split
    EVAL_LINES = None
    # 2 x GRU 256 (the shipped config has 512), Adam as the shipped config; at most 4 minutes of training
    CHAR_OVERRIDES = ["model.units=256", "model.embedding_dim=64", "training.epochs=4", "training.max_minutes=4"]
    # 2 x GRU 200, tied (the shipped config has 400); SGD at 20, halved every epoch after the first
    WORD_OVERRIDES = ["model.units=200", "model.embedding_dim=200", "model.dropout=0.2", "training.epochs=3"]
    WORD_OVERRIDES += ["training.lr_decay_start=1", "training.max_minutes=14"]
    SEEDS = 5
    WORD_NEW_TOKENS, CHAR_NEW_TOKENS = 30, 200
    TEMPERATURES = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5]
    POSITIONS = 200


def repository_root(start):
    """The folder with pyproject.toml at or above `start`, or None."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return None


# the notebook runs in notebooks/ and the runs go under the repository root; a notebook executed from another
# folder (jupytext --execute runs it where its output goes) finds the root from the installed package instead
ROOT = repository_root(Path.cwd().resolve()) or repository_root(Path(nlptool.__file__).resolve().parent)
if ROOT is None:
    raise RuntimeError("Run this notebook from inside the nlptool repository.")
os.chdir(ROOT)  # paths relative to the repository, so that what the notebook prints names no folder of this machine
RUNS = Path("runs") / "notebooks" / "04-language-models"
# the Makefile's data directory, unless NLPTOOL_DATA_DIR names another
if "NLPTOOL_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["NLPTOOL_DATA_DIR"] = str(ROOT.parent / "shared" / "data")

print("Smoke size" if SMOKE else "Full size")
print(f"runs in {RUNS}")

# %% [markdown]
# One palette for every figure, explicit colours on a white background, so that the figures read the same in a
# light and in a dark notebook theme.

# %%
plt.style.use("default")
plt.rcParams.update(
    {"figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white", "figure.dpi": 100}
)
COLOURS = {
    "train": "#0072B2",
    "validation": "#D55E00",
    "test": "#009E73",
    "reference": "#7f7f7f",
    "char": "#CC79A7",
    "word": "#0072B2",
    "likelihood": "#0072B2",
    "diversity": "#D55E00",
}


def axes(columns=1, width=5.2, height=3.6):
    fig, found = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    for axis in found[0]:
        axis.grid(True, color="#dddddd", linewidth=0.8)
    return fig, found[0]


# %% [markdown]
# ## 1. A character model on Tiny Shakespeare
#
# Tiny Shakespeare (Karpathy's char-rnn corpus) is about a million characters of the plays. nlptool's registry
# splits it by lines, 90 % for training and 5 % each for validation and test, in the order of the text, so that
# no scene is split across the sets. A character model reads the corpus as one stream of characters in which
# newlines are ordinary characters (the config's `tokenizer.unit: text`), so it learns the layout of a play
# too: a name in capitals, a colon, a new line, a speech.

# %%
shakespeare = {split: datasets.load("tiny_shakespeare", split)["text"].tolist() for split in ("train", "valid", "test")}
print(
    {
        split: f"{len(lines):,} lines, {sum(len(line) + 1 for line in lines):,} characters"
        for split, lines in shakespeare.items()
    }
)
print("\n".join(shakespeare["test"][:8]))

# %% [markdown]
# We train on the first `CHAR_LINES` lines of the training split. The lines go to `nlptool.train` as Python
# lists: the registry's frame holds empty lines (the blank line between two speeches), which matter in a
# character stream, and `nlptool.train` refuses a *data frame* with an empty text but takes a list of lines as
# it is. The config starts from the shipped `tiny_shakespeare` one, with the overrides of the setup cell; the
# run is evaluated on the test lines as soon as it is trained.


# %%
def head(lines, size):
    return lines if size is None else lines[:size]


started = time.perf_counter()
char_run = nlptool.train(
    "language-model",
    RUNS / "char-shakespeare",
    train=head(shakespeare["train"], CHAR_LINES),
    validation=head(shakespeare["valid"], EVAL_LINES),
    test=head(shakespeare["test"], EVAL_LINES),
    config="tiny_shakespeare",
    overrides=CHAR_OVERRIDES,
    overwrite=True,
    verbose=2,
)
char_seconds = time.perf_counter() - started
print(f"trained and evaluated in {char_seconds:.0f} s")
print(char_run.config.model)

# %% [markdown]
# ### Training curves
#
# `history.csv` has one row per epoch: the training and validation loss (mean negative log-likelihood per token,
# in nats), their perplexities, and the learning rate. For a character model the loss reads best in **bits per
# character**, the loss divided by ln 2: the number of yes/no questions the model needs, on average, to pin
# down the next character.

# %%
char_history = pd.read_csv(char_run.path / "history.csv")
display(char_history.round(4))


def plot_curves(history, title, unit_name, scale):
    fig, (axis,) = axes()
    epochs = history["epoch"] + 1
    if "perplexity" in history:  # the training loss (a running mean over the epoch, with dropout)
        axis.plot(epochs, history["loss"] * scale, marker="o", color=COLOURS["train"], label="training")
    axis.plot(epochs, history["val_loss"] * scale, marker="s", color=COLOURS["validation"], label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel(unit_name)
    axis.set_xticks(list(epochs))
    axis.set_title(title)
    axis.legend()
    fig.tight_layout()
    plt.show()


plot_curves(char_history, "Tiny Shakespeare, character model", "bits per character", 1 / math.log(2))

# %% [markdown]
# ### Test perplexity, and a scale for it
#
# `run.metrics` is the evaluation on the test lines read as one stream, the state carried from the first
# character to the last. A perplexity is the exponential of the mean loss: a model with perplexity P is as
# uncertain, on average, as if it chose uniformly among P tokens at every step. Two reference points, computed
# here from the corpus itself with pandas, give the figure a scale:
#
# - the **uniform** model, every character of the training text equally likely: its perplexity is the size of
#   the character set;
# - the **unigram** model, every character with its frequency in the training text and no context at all
#   (add-one smoothed, so that a character unseen in training does not get probability zero).


# %%
def reference_perplexities(train_tokens, test_tokens):
    """(uniform, unigram) perplexity on `test_tokens` (a pandas Series) of models fitted to `train_tokens`."""
    counts = train_tokens.value_counts()
    vocabulary = counts.index.union(pd.Index(test_tokens.unique()))
    probabilities = (counts.reindex(vocabulary, fill_value=0) + 1) / (counts.sum() + len(vocabulary))
    unigram = math.exp(-np.log(probabilities.reindex(test_tokens).to_numpy()).mean())
    return float(len(counts)), unigram


def characters(lines):
    return pd.Series(list("".join(line + "\n" for line in lines)))


char_test = head(shakespeare["test"], EVAL_LINES)
char_uniform, char_unigram = reference_perplexities(characters(shakespeare["train"]), characters(char_test))
m = char_run.metrics
best_char = char_history.loc[char_history["val_perplexity"].idxmin()]
char_table = pd.DataFrame(
    [
        ("uniform over the training characters", char_uniform, math.log2(char_uniform)),
        ("unigram (character frequencies)", char_unigram, math.log2(char_unigram)),
        (
            f"GRU model, validation (best epoch, {int(best_char['epoch']) + 1})",
            best_char["val_perplexity"],
            best_char["val_loss"] / math.log(2),
        ),
        ("GRU model, test", m["perplexity"], m["bits_per_character"]),
    ],
    columns=["model", "perplexity", "bits per character"],
)
display(char_table.round(3))
print(
    f"test: {m['tokens']:,} characters scored, perplexity {m['perplexity']:.3f}, "
    f"{m['bits_per_character']:.3f} bits per character"
)

# %% [markdown]
# The unigram model already knows that spaces and `e` are common; what a model of context adds over it is the
# rest: after `KING RICHAR`, a good model puts almost all of the probability on `D`. For comparison,
# `docs/benchmarks.md` records the shipped config (2 x GRU 512, two epochs of the whole training split in 8.6
# minutes) at a test perplexity of 5.30, 2.41 bits per character; ours is a smaller model trained for less time
# on half the text.
#
# ## 2. A word model on the Penn Treebank
#
# PTB in Mikolov's language-modelling version: Wall Street Journal sentences, lowercased, punctuation removed,
# numbers replaced by `N` and every word outside the 10,000 most frequent replaced by `<unk>`. Because the
# vocabulary is closed, every model on it predicts from the same 10,000 types (the words and the end of
# sentence), so perplexities on it are comparable across papers, as long as they count the same tokens: nlptool
# counts every word and every end of sentence of the test split (82,430 tokens), as is usual.

# %%
ptb = {split: datasets.load("ptb", split)["text"].tolist() for split in ("train", "valid", "test")}
print(
    {
        split: f"{len(lines):,} sentences, {sum(len(line.split()) for line in lines):,} words"
        for split, lines in ptb.items()
    }
)
for line in ptb["train"][:3]:
    print(line.strip())

# %% [markdown]
# The model: the shipped `ptb` config (stacked GRUs, the output softmax tied to the embedding, variational
# dropout, SGD at a learning rate of 20 with gradient clipping) at half its width, on the first `WORD_LINES`
# sentences, for at most three epochs within `training.max_minutes` (the history below shows how many fitted:
# a PTB epoch of these sentences takes minutes here). The language-model guide explains why word models train
# with SGD here: with the state carried across windows, Adam stalls near the unigram perplexity.

# %%
started = time.perf_counter()
word_run = nlptool.train(
    "language-model",
    RUNS / "word-ptb",
    train=head(ptb["train"], WORD_LINES),
    validation=head(ptb["valid"], EVAL_LINES),
    test=head(ptb["test"], EVAL_LINES),
    config="ptb",
    overrides=WORD_OVERRIDES,
    overwrite=True,
    verbose=2,
)
word_seconds = time.perf_counter() - started
print(f"trained and evaluated in {word_seconds:.0f} s")
print(word_run.config.model)

word_history = pd.read_csv(word_run.path / "history.csv")
display(word_history.round(3))
plot_curves(word_history, "PTB, word model", "loss (nats per token)", 1.0)

# %% [markdown]
# ### What the perplexity means, and where it sits
#
# A test perplexity of P says that the model, on average over the test tokens, gives the word that actually
# comes next a probability of 1/P (a geometric mean). The scale, again computed here: the uniform model over the
# 10,000 types (perplexity 10,000), and the unigram model of word frequencies, evaluated on the same tokens as
# the model is, every word and every end of sentence (`</s>`).


# %%
def words(lines):
    return pd.Series([token for line in lines for token in [*line.split(), "</s>"]])


word_test = head(ptb["test"], EVAL_LINES)
word_uniform, word_unigram = reference_perplexities(words(ptb["train"]), words(word_test))
w = word_run.metrics
best_word = word_history.loc[word_history["val_perplexity"].idxmin()]
word_table = pd.DataFrame(
    [
        ("uniform over the training vocabulary", word_uniform, "this notebook"),
        ("unigram (word frequencies)", word_unigram, "this notebook"),
        (
            f"GRU model, validation (best epoch, {int(best_word['epoch']) + 1})",
            best_word["val_perplexity"],
            "this notebook",
        ),
        ("GRU model, test", w["perplexity"], "this notebook"),
        ("5-gram Kneser-Ney, test", 141.2, "Mikolov et al. 2011, as reported"),
        ("LSTM 2 x 200, no dropout, test", 114.5, "Zaremba et al. 2014, as reported"),
        ("nlptool ptb config, 2 x GRU 400, 45 min, test", 102.9, "docs/benchmarks.md"),
        ("LSTM 2 x 1500, dropout, test", 78.4, "Zaremba et al. 2014, as reported"),
    ],
    columns=["model", "perplexity", "source"],
)
display(word_table.round(1))
print(
    f"test: {w['tokens']:,} tokens scored, perplexity {w['perplexity']:.1f}: on average the model gives the next "
    f"word a probability of 1/{w['perplexity']:.0f}, against 1/{word_unigram:.0f} from word frequencies alone"
)

# %% [markdown]
# The published rows are there for scale and are not like for like: the neural ones are larger or trained far
# longer (Zaremba et al.'s large model for tens of epochs on a GPU), and the n-gram model counts the whole
# training text, where ours has had a few minutes on two CPU cores and part of the training text. Whatever
# separates our test row from the unigram row is what the recurrent state has learnt to use of the context in
# that time. A word model after three short epochs is still far from converged: more epochs (the shipped
# `ptb` config trains for 45 minutes) are where the distance to the published rows closes.
#
# ## 3. Decoding side by side
#
# A language model gives a distribution over the next token; a *decoding method* turns it into text. nlptool's
# run (`run.predict`) and its export offer all of the common ones:
#
# | method | `run.predict` options | what it does |
# |---|---|---|
# | greedy | `temperature=0` | always the most probable next token |
# | temperature T | `temperature=T` | samples with the logits divided by T: below 1 sharper, above 1 flatter |
# | top-k | `top_k=k` | samples among the k most probable tokens only |
# | top-p (nucleus) | `top_p=p` | samples among the fewest most probable tokens whose probabilities add up to p |
# | beam search | `beam_width=W` | keeps the W most probable partial continuations and returns the best whole one |
# | beam search, normalised | also `length_penalty=a`, `min_new_tokens=m` | ranks by log-probability / lp, see below |
#
# Sampling takes a `seed`; the same seed gives the same text. We continue the same prompts with each method,
# with `SEEDS` seeds for the sampling methods (greedy and beam search are deterministic, and we run them with the
# same seeds to show that). The word model stops at the end of a sentence or after `WORD_NEW_TOKENS` words.

# %%
WORD_PROMPTS = ["the company said", "the stock market", "in the third quarter", "mr. <unk> said that"]
METHODS = {
    "greedy": {"temperature": 0.0},
    "temperature 0.5": {"temperature": 0.5},
    "temperature 1.0": {"temperature": 1.0},
    "top-k 40": {"temperature": 1.0, "top_k": 40},
    "top-p 0.9": {"temperature": 1.0, "top_p": 0.9},
    "beam search 5": {"beam_width": 5},
    "beam search 5, normalised": {"beam_width": 5, "length_penalty": 1.0, "min_new_tokens": 3},
}


def decode(run, prompts, methods, max_new_tokens, seeds):
    """One row per (method, seed, prompt): the continuation from `run.predict`."""
    rows = []
    for method, options in methods.items():
        for seed in range(seeds):
            seed_option = {} if "beam_width" in options else {"seed": seed}
            outputs = run.predict(prompts, max_new_tokens=max_new_tokens, **options, **seed_option)
            rows += [
                {"method": method, "seed": seed, "prompt": prompt, "text": output["text"]}
                for prompt, output in zip(prompts, outputs)
            ]
    return pd.DataFrame(rows)


started = time.perf_counter()
word_outputs = decode(word_run, WORD_PROMPTS, METHODS, WORD_NEW_TOKENS, SEEDS)
print(f"{len(word_outputs)} continuations in {time.perf_counter() - started:.1f} s")
with pd.option_context("display.max_colwidth", None):
    display(
        word_outputs[word_outputs["seed"] == 0]
        .pivot(index="method", columns="prompt", values="text")
        .loc[list(METHODS)]
    )

# %% [markdown]
# ### Likelihood against diversity, measured
#
# Reading outputs is only half of the comparison. For every continuation we compute:
#
# - **log-probability per token**: the mean log-probability the model itself gives each token of the
#   continuation after the prompt, at temperature 1 and without filtering; higher means "more typical" for the
#   model. The run's trained Keras model (`run.load().model`) and tokeniser score the prompt and the
#   continuation in one call, reading them after an end of sentence, as generation does;
# - **distinct-1 and distinct-2**: the share of the words, and of the word pairs, among all the outputs of a
#   method (all prompts and seeds) that are different: low values mean the method says the same thing again;
# - **repeated 3-grams**: the share of each output's word triples that already occurred earlier in the same
#   output: loops such as "of the company of the company";
# - **different outputs**: how many different continuations of one prompt the seeds gave.


# %%
@tf.function(reduce_retracing=True)
def _target_log_probs(model, inputs, targets):
    """log P(targets[:, t] | inputs[:, :t + 1]) under `model`, read from a zero state: (rows, time)."""
    logits, _ = model(inputs, training=False)
    return -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))


def score_rows(model, rows, chunk=16):
    """For each id array in `rows`, the log-probability of every id after the first, given the ones before."""
    found = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        batch = np.full((len(part), max(len(row) for row in part)), PAD_ID, np.int32)  # right padding is masked
        for i, row in enumerate(part):
            batch[i, : len(row)] = row
        scores = _target_log_probs(model, tf.constant(batch[:, :-1]), tf.constant(batch[:, 1:])).numpy()
        found += [scores[i, : len(row) - 1] for i, row in enumerate(part)]
    return found


def token_ids(tokenizer, text):
    ids = tokenizer([text]).numpy()[0]
    return ids[ids != PAD_ID]


def continuation_logprobs(run, prompts, texts, max_new_tokens):
    """The log-probability under `run`'s model of every token of each text after its prompt, and of the end
    of sentence after it when generation stopped there (a text shorter than `max_new_tokens`)."""
    trained = run.load()
    tokenizer, stops = trained.preprocessing.tokenizers["text"], run.config.generation.stop_at_end
    rows, prompt_lengths = [], []
    for prompt, text in zip(prompts, texts):
        prompt_ids, text_ids = token_ids(tokenizer, prompt), token_ids(tokenizer, text)
        ended = [END_ID] if stops and len(text_ids) < max_new_tokens else []
        rows.append(np.concatenate([[END_ID], prompt_ids, text_ids, ended]).astype(np.int32))
        prompt_lengths.append(len(prompt_ids))
    return [scores[length:] for scores, length in zip(score_rows(trained.model, rows), prompt_lengths)]


def ngrams(tokens, n):
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_share(tokens, n=3):
    grams = ngrams(tokens, n)
    return np.nan if not grams else 1 - len(set(grams)) / len(grams)


def distinct(texts, n):
    grams = [gram for text in texts for gram in ngrams(text.split(), n)]
    return np.nan if not grams else len(set(grams)) / len(grams)


def measures(run, outputs, max_new_tokens):
    """`outputs` with the measures of every continuation, and a table of them by method."""
    outputs = outputs.copy()
    scores = continuation_logprobs(run, outputs["prompt"].tolist(), outputs["text"].tolist(), max_new_tokens)
    outputs["log_prob_per_token"] = [score.mean() if len(score) else np.nan for score in scores]
    outputs["words"] = [len(text.split()) for text in outputs["text"]]
    outputs["repeated_3grams"] = [repeated_share(text.split()) for text in outputs["text"]]
    by_method = outputs.groupby("method", sort=False)
    table = by_method.agg(
        log_prob_per_token=("log_prob_per_token", "mean"),
        words=("words", "mean"),
        empty=("words", lambda n: (n == 0).mean()),
        repeated_3grams=("repeated_3grams", "mean"),
    )
    table["distinct_1"] = by_method["text"].agg(lambda texts: distinct(texts, 1))
    table["distinct_2"] = by_method["text"].agg(lambda texts: distinct(texts, 2))
    different = outputs.groupby(["method", "prompt"], sort=False)["text"].nunique()
    table["different_outputs"] = different.groupby("method", sort=False).mean()
    return outputs, table


word_scored, word_measures = measures(word_run, word_outputs, WORD_NEW_TOKENS)
display(word_measures.round(3))
order = word_measures["log_prob_per_token"].sort_values(ascending=False)
print("most to least probable per token, for the model:", ", ".join(f"{k} ({v:.2f})" for k, v in order.items()))
print(
    f"distinct-2 from {word_measures['distinct_2'].min():.2f} ({word_measures['distinct_2'].idxmin()}) "
    f"to {word_measures['distinct_2'].max():.2f} ({word_measures['distinct_2'].idxmax()}); "
    f"beam search: {word_measures.loc['beam search 5', 'words']:.1f} words a continuation on average "
    f"({word_measures.loc['beam search 5', 'empty']:.0%} empty), normalised "
    f"{word_measures.loc['beam search 5, normalised', 'words']:.1f} "
    f"({word_measures.loc['beam search 5, normalised', 'empty']:.0%} empty), "
    f"greedy {word_measures.loc['greedy', 'words']:.1f}"
)

# %% [markdown]
# How to read the table. Greedy decoding and beam search aim at probable text, so they should sit near the top
# of the log-probability column, and they give one continuation per prompt whatever the seed
# (`different_outputs` of 1). Beam search maximises the probability of the *whole* continuation, end of
# sentence included. By default it scores plain log-probability, and every extra word can only lower a sum of
# log-probabilities, so it favours short continuations, down to the empty one (the end of sentence straight
# after the prompt) when that is probable enough: the `words` and `empty` columns of "beam search 5" show how
# much of that happened here. The usual remedies, as in translation (Wu et al. 2016), are the normalised row:
# a length penalty of 1 (the log-probability divided by lp = ((5 + length) / 6) ** 1, which grows with the
# length, so that a longer continuation is not penalised for every word) and a minimum of 3 new tokens; its
# continuations should be longer. Greedy text is prone to loops (`repeated_3grams`). Sampling at temperature 1
# gives text as varied as the model's distribution, long tail of unlikely words included; a lower temperature,
# top-k and top-p cut that tail in different ways and should sit in between on both columns. Which trade is
# best depends on the use: "the most likely completion" wants the top of the table, varied text the middle.
#
# ### The same on Shakespeare
#
# The character model with the same methods, on two prompts. It does not stop at a line end (the shipped config
# has `generation.stop_at_end: false`), so every continuation is `CHAR_NEW_TOKENS` characters long. Seed 0 of
# each method, first prompt:

# %%
CHAR_PROMPTS = ["ROMEO:\nO, ", "First Citizen:\nWe are "]
char_outputs = decode(char_run, CHAR_PROMPTS, METHODS, CHAR_NEW_TOKENS, SEEDS)
first = char_outputs[(char_outputs["seed"] == 0) & (char_outputs["prompt"] == CHAR_PROMPTS[0])]
for method, text in zip(first["method"], first["text"]):
    print(f"----- {method} -----\n{CHAR_PROMPTS[0]}{text}\n")

char_scored, char_measures = measures(char_run, char_outputs, CHAR_NEW_TOKENS)
char_measures.insert(1, "bits_per_character", -char_measures["log_prob_per_token"] / math.log(2))
display(char_measures.round(3))
print(
    f"bits per character of the model's own text: greedy {char_measures.loc['greedy', 'bits_per_character']:.2f}, "
    f"temperature 1.0 {char_measures.loc['temperature 1.0', 'bits_per_character']:.2f}; "
    f"of the real test text: {char_run.metrics['bits_per_character']:.2f}"
)

# %% [markdown]
# Here the log-probability is per character, and the table gives it in bits too, to set beside the test bits
# per character printed last. Text sampled at temperature 1 is drawn from the model's own distribution, so its
# cost to the model should be close to what real text costs it when the model is well calibrated; greedy and
# beam text should cost much less, being the model's "safest" text, and usually read as repetitive for it.
#
# ## 4. Two figures
#
# ### The temperature: likelihood against diversity
#
# The temperature is a single dial between the greedy end and the varied end. We sweep it on the word model,
# with the same prompts and seeds, and plot the model's own log-probability per token of the outputs and
# their distinct-2, with greedy and beam search as reference lines.

# %%
sweep = decode(word_run, WORD_PROMPTS, {f"T={t}": {"temperature": t} for t in TEMPERATURES}, WORD_NEW_TOKENS, SEEDS)
_, sweep_measures = measures(word_run, sweep, WORD_NEW_TOKENS)
sweep_measures.insert(0, "temperature", TEMPERATURES)
display(sweep_measures.round(3))

fig, (left, right) = axes(2)
left.plot(TEMPERATURES, sweep_measures["log_prob_per_token"], marker="o", color=COLOURS["likelihood"], label="sampling")
right.plot(TEMPERATURES, sweep_measures["distinct_2"], marker="o", color=COLOURS["diversity"], label="sampling")
for axis, column in ((left, "log_prob_per_token"), (right, "distinct_2")):
    for method, style in (("greedy", "--"), ("beam search 5", ":")):
        if np.isfinite(word_measures.loc[method, column]):
            axis.axhline(word_measures.loc[method, column], color=COLOURS["reference"], linestyle=style, label=method)
    axis.set_xlabel("temperature")
    axis.legend()
left.set_ylabel("log-probability per token (nats)")
left.set_title("the model's own likelihood of its outputs")
right.set_ylabel("distinct-2 over all outputs")
right.set_title("diversity of the outputs")
fig.tight_layout()
plt.show()
low, high = sweep_measures.iloc[0], sweep_measures.iloc[-1]
print(
    f"temperature {low['temperature']}: log-probability per token {low['log_prob_per_token']:.2f}, "
    f"distinct-2 {low['distinct_2']:.2f}; temperature {high['temperature']}: "
    f"{high['log_prob_per_token']:.2f}, distinct-2 {high['distinct_2']:.2f}"
)

# %% [markdown]
# The expected shape: as the temperature rises, the outputs become less probable under the model and more
# varied; at the low end they approach the greedy output and its low diversity. Above 1 the sampler gives the
# tail more than its due, and the text drifts into rare words. With `SEEDS` samples of a few prompts the curves
# are noisy; more seeds smooth them.
#
# ### How much context helps: the loss by position
#
# The test perplexities of sections 1 and 2 are measured with the state carried over the whole test stream.
# What does the model do with little context? We cut the test stream into pieces of `POSITIONS` tokens, start
# the model afresh on each (zero state, after an end of sentence, as a prompt is read) and average the loss at
# each position: position 1 is predicted from one token of the piece, position 100 from a hundred.


# %%
def loss_by_position(run, lines, unit, positions, max_pieces=256):
    """Mean loss (nats) at each position of pieces of the test stream, each read from a fresh state."""
    tokenizer = run.load().preprocessing.tokenizers["text"]
    if unit == "line":  # as nlptool reads a line corpus: every line's tokens, then an end of sentence
        stream = np.concatenate([np.append(token_ids(tokenizer, line), END_ID) for line in lines])
    else:  # one text whose newlines are characters
        stream = token_ids(tokenizer, "".join(line + "\n" for line in lines))
    pieces = min(max_pieces, len(stream) // positions)
    rows = [np.concatenate([[END_ID], stream[i * positions : (i + 1) * positions]]) for i in range(pieces)]
    return -np.mean(score_rows(run.load().model, rows), axis=0), pieces


fig, (left, right) = axes(2)
for axis, run, lines, unit, name, scale, label in (
    (left, char_run, char_test, "text", "char", 1 / math.log(2), "bits per character"),
    (right, word_run, word_test, "line", "word", 1.0, "loss (nats per token)"),
):
    curve, pieces = loss_by_position(run, lines, unit, POSITIONS)
    carried = run.metrics["nll_per_token"]
    axis.plot(np.arange(1, POSITIONS + 1), curve * scale, color=COLOURS[name], label=f"fresh state ({pieces} pieces)")
    axis.axhline(carried * scale, color=COLOURS["test"], linestyle="--", label="test stream, state carried")
    axis.set_xscale("log")
    axis.set_xlabel("position after a fresh start (tokens read)")
    axis.set_ylabel(label)
    axis.set_title(f"{name} model")
    axis.legend()
    print(
        f"{name} model: {curve[0] * scale:.2f} at position 1, {curve[-10:].mean() * scale:.2f} over the last ten "
        f"positions, {carried * scale:.2f} over the test stream with the state carried ({label})"
    )
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look for: the first tokens after a fresh start should cost the most, since the model guesses them
# with almost no context (for the character model they can be the middle of any word); the loss should then
# fall as the state fills with the text read so far and flatten near the figure of the whole stream. Where it
# flattens says roughly how far back the model's useful memory reaches.
#
# ## Where next
#
# - The same on the command line: `nlptool generate RUN_DIR "the company said" --top-p 0.9 --seed 1`, or
#   `--beam-width 5`.
# - The shipped configs at full size: `nlptool train language-model --dataset ptb --config ptb --run-dir
#   runs/ptb` (45 minutes on two cores in the benchmarks, test perplexity 102.9) and `--dataset tiny_shakespeare
#   --config tiny_shakespeare`.
# - Export a run with `run.export()`: its `generate` and `beam_search` signatures take the same options, and it
#   loads with plain TensorFlow (`docs/guide/language-models.md`).
# - A language model as the start of a classifier: `nlptool train sentiment ... --init-encoder-from RUN_DIR`.
