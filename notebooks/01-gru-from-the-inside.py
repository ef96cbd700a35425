# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # The GRU from the inside
#
# nlptool's models are built around one recurrent layer, `nlptool.layers.GRU`. This notebook opens it up:
#
# 1. **the equations** of the gated recurrent unit (Cho et al. 2014) and of the variant cuDNN computes, next to a
#    NumPy implementation written from them, checked against `nlptool.layers.GRU` on the same weights;
# 2. **the gates at work**: a small SST-2 sentiment classifier trained with `nlptool.train`, its GRU weights run
#    through the NumPy equations over real sentences, and heat maps of the update and reset gates per word, with a
#    table of the words that reset the state most;
# 3. **the same weights in three libraries**: `keras.layers.GRU`, `nlptool.layers.GRU` and `torch.nn.GRU` (when
#    PyTorch is installed) give the same outputs;
# 4. **GRU against LSTM** on one task: parameters, training time and accuracy of the same small model;
# 5. **why cuDNN needs `reset_after=True`**: what "after" means, why it lets a GPU do one matrix product per step,
#    and that the two variants are different functions of the same weights.
#
# Runs in about 5 minutes on a 2-core CPU at full size.

# %% [markdown]
# ## Setup
#
# `SMOKE` shrinks every size so that the whole notebook runs in well under a minute (for tests); the numbers it
# prints are then meaningless. Run directories go under `runs/notebooks/01-gru/` at the root of the repository;
# `overwrite=True` lets the notebook run again from the top. The data come from nlptool's dataset registry, which
# reads `NLPTOOL_DATA_DIR`.

# %%
import os
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log: fatal errors only (set before its import)

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from IPython.display import display  # noqa: E402

import nlptool  # noqa: E402
from nlptool.data import datasets  # noqa: E402
from nlptool.layers import GRU, gru_convert  # noqa: E402

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"
SEED = 1234
if SMOKE:
    RUN_EXAMPLES = 256  # SST-2 training phrases of the classifier whose gates we read
    RUN_OVERRIDES = [
        "model.bidirectional=false",
        "training.epochs=1",
        "model.units=8",
        "model.embedding_dim=16",
        "tokenizer.vocab_size=2000",
        "training.validation_fraction=0.01",  # a few dozen validation phrases
    ]
    MIN_COUNT = 2  # occurrences a word needs in the dev set to enter the gate table
    COMPARE_TRAIN, COMPARE_UNITS, COMPARE_EMBEDDING, COMPARE_EPOCHS = 512, 8, 16, 1
    COMPARE_LENGTH, COMPARE_BATCH = 24, 128
else:
    RUN_EXAMPLES = None  # all 67,349 training phrases
    RUN_OVERRIDES = ["model.bidirectional=false", "training.epochs=2"]  # otherwise the shipped sst2 config
    MIN_COUNT = 15
    COMPARE_TRAIN, COMPARE_UNITS, COMPARE_EMBEDDING, COMPARE_EPOCHS = 16_000, 64, 64, 3
    COMPARE_LENGTH, COMPARE_BATCH = 40, 64


def repository_root():
    """The folder with pyproject.toml above the working directory (the notebook runs in notebooks/), else above
    the nlptool package (a kernel started elsewhere, e.g. `jupytext --execute ... -o /tmp/...`)."""
    for start in (Path.cwd().resolve(), Path(nlptool.__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file():
                return folder
    raise RuntimeError("Run this notebook from inside the nlptool repository.")


ROOT = repository_root()
os.chdir(ROOT)  # the paths below, and those nlptool prints, are relative to the repository
RUNS = Path("runs") / "notebooks" / "01-gru"
RUNS.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(SEED)

print(
    f"{'Smoke size' if SMOKE else 'Full size'}: classifier on "
    f"{'all' if RUN_EXAMPLES is None else f'{RUN_EXAMPLES:,}'} SST-2 training phrases, comparison on "
    f"{COMPARE_TRAIN:,} with {COMPARE_UNITS} units for {COMPARE_EPOCHS} epoch(s); runs in {RUNS}"
)

# %% [markdown]
# Figures have a white background and explicit colours, so that they read the same in a light and in a dark
# notebook theme.

# %%
INK, GRID = "#222222", "#dddddd"
COLOURS = {"LSTM (Keras)": "#d62728", "GRU (Keras)": "#1f77b4", "GRU (nlptool)": "#2ca02c"}


def figure(rows=1, columns=1, width=5.0, height=3.4, **options):
    fig, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False, facecolor="white", **options
    )
    for axis in axes.flat:
        axis.set_facecolor("white")
        for spine in axis.spines.values():
            spine.set_color(INK)
        axis.tick_params(colors=INK)
    return fig, axes


# %% [markdown]
# ## 1. The equations, and NumPy next to them
#
# A GRU reads a sequence $x_1, \dots, x_T$ and keeps one state vector $h_t$ of `units` numbers. At every step two
# **gates**, vectors of numbers between 0 and 1, decide how the state changes (Cho et al. 2014, "Learning phrase
# representations using RNN encoder-decoder for statistical machine translation"):
#
# $$
# \begin{aligned}
# z_t &= \sigma(x_t W_z + b_z + h_{t-1} U_z + c_z) && \text{update gate: how much of the old state to keep}\\
# r_t &= \sigma(x_t W_r + b_r + h_{t-1} U_r + c_r) && \text{reset gate: how much of the old state the candidate sees}\\
# \tilde h_t &= \tanh\big(x_t W_h + b_h + r_t \odot (h_{t-1} U_h + c_h)\big) && \text{candidate state}\\
# h_t &= z_t \odot h_{t-1} + (1 - z_t) \odot \tilde h_t
# \end{aligned}
# $$
#
# $\sigma$ is the logistic sigmoid and $\odot$ the element-wise product. With $z_t$ near 1 a unit keeps its value
# and the word passes it by; near 0 the unit is overwritten by the candidate. With $r_t$ near 0 the candidate is
# computed as if there were no past: the unit **resets**. Here $z$ weights the *old* state, as in Cho et al.'s
# paper, Keras, cuDNN and PyTorch; some textbooks write $h_t = (1 - z) h_{t-1} + z \tilde h_t$ with the
# opposite $z$.
#
# The candidate above applies the reset gate **after** the recurrent product, $r_t \odot (h_{t-1} U_h + c_h)$. This
# is the form cuDNN computes (its documentation's `CUDNN_GRU` equations), Keras's `reset_after=True` (its default)
# and the only form of `torch.nn.GRU`. Cho et al.'s original applies it **before**,
# $\tilde h_t = \tanh(x_t W_h + b_h + (r_t \odot h_{t-1}) U_h)$, which Keras calls `reset_after=False`. Section 5
# is about the difference.
#
# **Weights.** Keras, and `nlptool.layers.GRU` with it, store the three input matrices side by side in `kernel`,
# shape (input_dim, 3·units), the three recurrent matrices in `recurrent_kernel`, (units, 3·units), both in the
# gate order $[z, r, h]$, and with `reset_after=True` a `bias` of shape (2, 3·units): the input biases $b$ in row 0,
# the recurrent biases $c$ in row 1. The NumPy below is written from the equations and this layout only.


# %%
def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def gru_step(x, h, kernel, recurrent_kernel, bias, reset_after=True):
    """One GRU step from the equations. x (batch, input_dim), h (batch, units) -> h_t and the gates."""
    n = h.shape[-1]
    z_, r_, h_ = slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)  # the gate blocks of the weights
    if reset_after:
        b, c = bias  # input biases, recurrent biases
        xw = x @ kernel + b  # x W + b of all three gates
        hu = h @ recurrent_kernel + c  # h U + c of all three gates: ONE product
        z = sigmoid(xw[:, z_] + hu[:, z_])
        r = sigmoid(xw[:, r_] + hu[:, r_])
        candidate = np.tanh(xw[:, h_] + r * hu[:, h_])  # reset applied after the product
    else:
        xw = x @ kernel + bias  # one bias vector: no recurrent bias
        hu = h @ recurrent_kernel[:, : 2 * n]  # h U of the two gates
        z = sigmoid(xw[:, z_] + hu[:, z_])
        r = sigmoid(xw[:, r_] + hu[:, r_])
        candidate = np.tanh(xw[:, h_] + (r * h) @ recurrent_kernel[:, h_])  # a second product, after r is known
    h_new = z * h + (1.0 - z) * candidate
    return h_new, {"z": z, "r": r, "candidate": candidate}


def gru_sequence(xs, kernel, recurrent_kernel, bias, reset_after=True):
    """Run the steps over xs (batch, time, input_dim) from a zero state: states and gates, each (batch, time, units)."""
    h = np.zeros((xs.shape[0], recurrent_kernel.shape[0]))
    states, gates = [], {"z": [], "r": [], "candidate": []}
    for t in range(xs.shape[1]):
        h, step_gates = gru_step(xs[:, t], h, kernel, recurrent_kernel, bias, reset_after)
        states.append(h)
        for name, value in step_gates.items():
            gates[name].append(value)
    return np.stack(states, axis=1), {name: np.stack(values, axis=1) for name, values in gates.items()}


# %% [markdown]
# Now the check: an `nlptool.layers.GRU` with random weights (random biases too, so that every term of the
# equations counts), and the NumPy steps run on the same weights and inputs, in float64.

# %%
rng = np.random.default_rng(SEED)
batch, steps, input_dim, units = 3, 7, 5, 4
layer = GRU(units, return_sequences=True)
layer.build((None, None, input_dim))
print("weights of nlptool.layers.GRU:", {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights})
layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.weights])

xs = rng.normal(size=(batch, steps, input_dim)).astype("float32")
expected, _ = gru_sequence(xs.astype("float64"), *[w.astype("float64") for w in layer.get_weights()])
outputs = np.asarray(layer(xs))
print(f"max |nlptool.layers.GRU - NumPy equations| = {np.abs(outputs - expected).max():.2e} (float32 against float64)")
assert np.allclose(outputs, expected, atol=1e-5)

# %% [markdown]
# The layer and a few lines of NumPy agree to float32 precision. The layer is not *implemented* like this (it has
# a fused path with a hand-written backward pass, and cuDNN on a GPU; see `docs/guide/gru.md`), but it computes
# this function.
#
# ## 2. The gates on real sentences
#
# To see what the gates do we need weights that have learnt something. We train a sentiment classifier on SST-2
# (the Stanford Sentiment Treebank, Socher et al. 2013, in GLUE's version: 67,349 training phrases, 872 dev
# sentences) with nlptool's shipped `sst2` config (a word tokeniser, an embedding, a GRU and max-and-mean pooling
# over its outputs), changed in one respect: the shipped config reads each sentence in both directions with two
# GRUs, and we keep only the left-to-right one (`model.bidirectional=false`), so that the GRU whose gates we read
# is the model's whole memory of the sentence, read in the order we read it. `nlptool.train` evaluates the model on
# the dev sentences.

# %%
started = time.perf_counter()
run = nlptool.train(
    "sentiment",
    RUNS / "sst2",
    dataset="sst2",
    config="sst2",
    overrides=RUN_OVERRIDES,
    max_train_examples=RUN_EXAMPLES,
    overwrite=True,
    verbose=2,
)
run_seconds = time.perf_counter() - started
print(
    f"trained in {run_seconds:.0f} s; SST-2 {run.metrics['split']} accuracy {run.metrics['accuracy']:.4f} "
    f"on {run.metrics['examples']:,} sentences"
)

# %% [markdown]
# `run.load()` gives the trained Keras model and the run's tokeniser. The GRU's input at each step is the word's
# embedding vector, so the NumPy steps need only the embedding matrix and the three GRU weights. As a second check,
# nlptool's own `gate_activations` (a public method of the layer, meant for plots like these) must agree with the
# NumPy gates.

# %%
trained = run.load()
tokenizer = trained.preprocessing.tokenizers["text"]
max_length = run.config.tokenizer.max_length
embedding = trained.model.get_layer("embedding").get_weights()[0].astype("float64")
gru_layer = trained.model.get_layer("gru_0")
weights = [w.astype("float64") for w in gru_layer.get_weights()]
print(f"{type(gru_layer).__module__}.{type(gru_layer).__name__} with {gru_layer.units} units, reset_after=True;")
print("kernel, recurrent_kernel, bias shapes:", [w.shape for w in weights])

dev = datasets.load("sst2", "dev")  # columns text, label (1 = positive)
dev_ids = tokenizer.cut(dev["text"].tolist(), max_length).numpy()  # (sentences, longest), right-padded with 0
dev_tokens = tokenizer.tokens(dev_ids).numpy()  # the token string of every id, "<unk>" for unknown words
ids = [row[row > 0] for row in dev_ids]  # one id array a sentence
words = [[token.decode() for token in tokens[: len(row)]] for tokens, row in zip(dev_tokens, ids)]


def gates_of(sentence_ids):
    """NumPy states and gates of the trained GRU over one sentence, (time, units) each."""
    states, gates = gru_sequence(embedding[sentence_ids][None], *weights)
    return states[0], {name: value[0] for name, value in gates.items()}


dev_gates = [gates_of(row) for row in ids]

check = gru_layer.gate_activations(embedding[ids[0]][None].astype("float32"))
print(
    "max |gate_activations - NumPy| on the first dev sentence: "
    f"z {np.abs(np.asarray(check['z'])[0] - dev_gates[0][1]['z']).max():.1e}, "
    f"r {np.abs(np.asarray(check['r'])[0] - dev_gates[0][1]['r']).max():.1e}"
)

# %% [markdown]
# ### Heat maps
#
# Which sentences to show is a choice, so here is the rule rather than a hand-picked few: the first four dev
# sentences of 8 to 20 tokens that contain "but", where the sentiment often turns (topped up with the first
# sentences of that length if fewer contain it, as with the tiny vocabulary of a smoke run). For each, the mean over the
# units of the update gate $z$ and of the reset gate $r$ at each word (the gates computed on reading that word),
# and below, every unit of the first sentence. Words outside the tokeniser's vocabulary reach the GRU as `<unk>`.
# Averaging over units squeezes the means towards the middle, so the colours of the top figure span the 1st to 99th
# percentile of these means over all dev tokens (printed), not 0 to 1; the per-unit maps use the full 0 to 1.

# %%
medium = [i for i, row in enumerate(words) if 8 <= len(row) <= 20]
chosen = ([i for i in medium if "but" in words[i]] + [i for i in medium if "but" not in words[i]])[:4]
means = np.concatenate([np.concatenate([g["z"].mean(axis=1), g["r"].mean(axis=1)]) for _, g in dev_gates])
low, high = np.percentile(means, [1, 99])
print(f"colour scale of the mean gates: {low:.3f} to {high:.3f}")
fig, axes = figure(len(chosen), 1, width=11, height=2.0, layout="constrained")
for axis, i in zip(axes[:, 0], chosen):
    _, gates = gates_of(ids[i])
    grid = np.stack([gates["z"].mean(axis=1), gates["r"].mean(axis=1)])
    image = axis.imshow(grid, cmap="viridis", vmin=low, vmax=high, aspect="auto")
    axis.set_yticks([0, 1], ["z (update)", "r (reset)"])
    axis.set_xticks(range(len(words[i])), words[i], rotation=40, ha="right", fontsize=8)
    axis.set_title(f"dev sentence {i} (label: {'positive' if dev['label'][i] else 'negative'})", fontsize=9, color=INK)
fig.colorbar(image, ax=axes[:, 0], label="mean gate value over units", fraction=0.02)
plt.show()

first = chosen[0]
_, gates = gates_of(ids[first])
shown_units = min(16, gates["z"].shape[1])
fig, axes = figure(1, 2, width=5.6, height=0.28 * shown_units + 1.6, layout="constrained")
for axis, name, title in zip(axes[0], ("z", "r"), ("update gate z", "reset gate r")):
    image = axis.imshow(gates[name][:, :shown_units].T, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(len(words[first])), words[first], rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("unit")
    axis.set_title(f"{title}, first {shown_units} units, sentence {first}", fontsize=9, color=INK)
fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03)
plt.show()

# %% [markdown]
# ### Which words reset the state?
#
# Four sentences are anecdotes. Over **all** dev sentences: for every word (token) seen at least `MIN_COUNT`
# times, the mean over units and occurrences of $r$ and $z$ on reading it. A low mean $r$ means the candidate is
# computed with the past largely shut out; a high mean $z$ means the state mostly ignores the word. The first word
# of a sentence is left out: it always meets the zero state. (Even there $r$ is not idle: with `reset_after=True`
# it still scales the recurrent bias $c_h$.)

# %%
rows = []
for row, (_, gates) in zip(words, dev_gates):
    for position, word in enumerate(row):
        if position > 0:
            rows.append((word, gates["r"][position].mean(), gates["z"][position].mean()))
per_token = pd.DataFrame(rows, columns=["word", "mean r", "mean z"])
table = per_token.groupby("word").agg(
    count=("mean r", "size"), **{"mean r": ("mean r", "mean"), "mean z": ("mean z", "mean")}
)
table = table[table["count"] >= MIN_COUNT]
print(
    f"{len(per_token):,} tokens in {len(ids):,} dev sentences; {len(table):,} words seen at least {MIN_COUNT} times. "
    f"Over all tokens: mean r {per_token['mean r'].mean():.3f}, mean z {per_token['mean z'].mean():.3f}; "
    f"spread of the word means: r {table['mean r'].min():.3f} to {table['mean r'].max():.3f}, "
    f"z {table['mean z'].min():.3f} to {table['mean z'].max():.3f}"
)
lowest_r = table.sort_values("mean r").head(12).reset_index()
highest_z = table.sort_values("mean z", ascending=False).head(12).reset_index()
display(pd.concat({"lowest mean reset r": lowest_r, "highest mean update z": highest_z}, axis=1).round(3))

# %% [markdown]
# How to read this: compare the ranges printed above before reading meaning into the order. If the word means of
# $r$ span only a few hundredths, the gate barely depends on the word and the order is close to noise; if they span
# tenths, the words at the top are the ones after which this model starts its candidate afresh. Punctuation and
# function words ("but", "and", ",", ".") at the top of a list are the classic pattern: they mark where a clause
# ends. Whether this run shows it is in the table, not in this paragraph; with a smaller or shorter-trained model
# the gates are less specialised.
#
# The same question, answered for units rather than words: how much does each unit's gate move at all? A unit
# whose $z$ stays near 1 on every word is a slow memory; one whose $z$ swings is a fast, word-driven unit.

# %%
all_z = np.concatenate([gates["z"] for _, gates in dev_gates])
all_r = np.concatenate([gates["r"] for _, gates in dev_gates])
fig, axes = figure(1, 1, width=9, height=3.2)
axis = axes[0, 0]
order = np.argsort(all_z.mean(axis=0))
axis.plot(all_z.mean(axis=0)[order], color="#1f77b4", marker="o", markersize=3, label="mean z")
axis.fill_between(
    range(len(order)),
    np.percentile(all_z, 10, axis=0)[order],
    np.percentile(all_z, 90, axis=0)[order],
    color="#1f77b4",
    alpha=0.2,
    label="z, 10th to 90th percentile over tokens",
)
axis.plot(all_r.mean(axis=0)[order], color="#d62728", marker="s", markersize=3, label="mean r")
axis.set_xlabel("unit (sorted by mean z)")
axis.set_ylabel("gate value")
axis.set_ylim(0, 1)
axis.grid(True, color=GRID)
axis.legend(loc="lower right", fontsize=8)
axis.set_title("The trained GRU over all dev tokens, unit by unit", color=INK)
plt.show()
print(
    f"units whose mean z is above 0.9: {(all_z.mean(axis=0) > 0.9).sum()} of {all_z.shape[1]}; "
    f"below 0.5: {(all_z.mean(axis=0) < 0.5).sum()}"
)

# %% [markdown]
# ## 3. The same weights in Keras, nlptool and PyTorch
#
# The trained GRU's weights go into three layers, which then read the same padded batch of dev sentences
# (with the padding masked):
#
# - `keras.layers.GRU(reset_after=True)`: the same variables in the same layout, so `set_weights` works as it is;
# - `nlptool.layers.GRU`: likewise;
# - `torch.nn.GRU`: another layout. PyTorch stores `weight_ih_l0` (3·units, input_dim) and `weight_hh_l0`
#   (3·units, units), transposed, with the gate blocks in the order $[r, z, n]$ ($n$ is the candidate), and two
#   bias vectors `bias_ih_l0`, `bias_hh_l0` (its documentation's equations are the `reset_after=True` ones above).
#   We write the conversion ourselves in NumPy from these two descriptions and check it against nlptool's
#   converter, `nlptool.layers.gru_convert.to_torch_state_dict`.
#
# PyTorch is optional here: without it, that comparison is skipped.

# %%
kernel, recurrent_kernel, bias = gru_layer.get_weights()
n = gru_layer.units
by_gate = {"z": slice(0, n), "r": slice(n, 2 * n), "h": slice(2 * n, 3 * n)}


def to_torch_order(matrix):
    """Keras column blocks [z, r, h] -> torch blocks [r, z, n]."""
    return np.concatenate([matrix[..., by_gate["r"]], matrix[..., by_gate["z"]], matrix[..., by_gate["h"]]], axis=-1)


by_hand = {
    "weight_ih_l0": to_torch_order(kernel).T,
    "weight_hh_l0": to_torch_order(recurrent_kernel).T,
    "bias_ih_l0": to_torch_order(bias[0]),
    "bias_hh_l0": to_torch_order(bias[1]),
}
converted = gru_convert.to_torch_state_dict(gru_layer)
same = all(np.array_equal(by_hand[key], converted[key]) for key in by_hand)
print("our conversion equals gru_convert.to_torch_state_dict:", same)

# a padded batch of real sentences and its mask
batch_ids = ids[:64]
lengths = np.array([len(row) for row in batch_ids])
padded = np.zeros((len(batch_ids), lengths.max()), "int64")
for i, row in enumerate(batch_ids):
    padded[i, : len(row)] = row
mask = padded > 0
inputs = embedding[padded].astype("float32")

# the reference: NumPy, sentence by sentence without padding
reference = [gates_of(row)[0] for row in batch_ids]


def differences(outputs):
    """max |outputs - NumPy| over the valid positions of every sentence."""
    return max(np.abs(np.asarray(outputs)[i, : len(r)] - r).max() for i, r in enumerate(reference))


keras_gru = keras.layers.GRU(n, return_sequences=True, reset_after=True)
keras_gru.build((None, None, inputs.shape[-1]))
keras_gru.set_weights([kernel, recurrent_kernel, bias])
nlptool_gru = GRU(n, return_sequences=True)
nlptool_gru.build((None, None, inputs.shape[-1]))
nlptool_gru.set_weights([kernel, recurrent_kernel, bias])

results = {
    "keras.layers.GRU": np.asarray(keras_gru(inputs, mask=mask)),
    "nlptool.layers.GRU": np.asarray(nlptool_gru(inputs, mask=mask)),
}
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: the torch.nn.GRU comparison is skipped (pip install torch to run it).")
if torch is not None:
    torch_gru = torch.nn.GRU(inputs.shape[-1], n, batch_first=True)
    torch_gru.load_state_dict({key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in by_hand.items()})
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(inputs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        torch_outputs, _ = torch_gru(packed)
    results["torch.nn.GRU"] = torch.nn.utils.rnn.pad_packed_sequence(torch_outputs, batch_first=True)[0].numpy()

names = list(results)
agreement = pd.DataFrame(
    [[differences(results[a])] + [np.abs(results[a][mask] - results[b][mask]).max() for b in names] for a in names],
    index=names,
    columns=["vs NumPy (float64)"] + [f"vs {b}" for b in names],
)
print(f"max abs difference of the outputs over {mask.sum():,} valid positions of {len(batch_ids)} dev sentences:")
display(agreement.map(lambda v: f"{v:.1e}"))
assert (agreement.to_numpy() < 1e-4).all()

# %% [markdown]
# The printed differences are at the level of float32 rounding (the `assert` stops the notebook if any reaches
# $10^{-4}$): the libraries sum the same products in different orders. Weights therefore move between the three
# unchanged (for torch, permuted and transposed), which is what lets a model trained with one be served or
# fine-tuned with another.
#
# ## 4. GRU against LSTM on one task
#
# The LSTM (Hochreiter and Schmidhuber 1997) has three gates and a separate memory cell; the GRU merges the cell
# into the state and has two gates, so it has three weight blocks where the LSTM has four. Whether that costs
# accuracy is an empirical question (Chung et al. 2014 found the two comparable on their tasks, neither better
# everywhere). Here is one small answer on SST-2: the same Keras model (embedding, a bidirectional recurrent
# layer, masked mean pooling, a sigmoid output) with `keras.layers.LSTM`, `keras.layers.GRU` and
# `nlptool.layers.GRU`, trained on the same sentences, with the same seed, batches and epochs, and evaluated on
# the 872 dev sentences. Texts are tokenised with the sentiment run's tokeniser and padded to a fixed length, so
# every batch has the same shape.

# %%
train_frame = datasets.load("sst2", "train").sample(n=COMPARE_TRAIN, random_state=SEED)


def encode(texts):
    rows = tokenizer.cut(list(texts), COMPARE_LENGTH).numpy()
    return np.pad(rows, [(0, 0), (0, COMPARE_LENGTH - rows.shape[1])])


x_train, y_train = encode(train_frame["text"]), train_frame["label"].to_numpy("float32")
x_dev, y_dev = encode(dev["text"]), dev["label"].to_numpy("float32")
vocabulary = tokenizer.vocabulary_size()
print(f"{len(x_train):,} training and {len(x_dev):,} dev sentences, {COMPARE_LENGTH} tokens, vocabulary {vocabulary:,}")


class EpochWatch(keras.callbacks.Callback):
    """The training seconds of each epoch, then the dev accuracy (a direct call of the model, outside the timing)."""

    def on_train_begin(self, logs=None):
        self.seconds, self.dev_accuracy = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)
        p_positive = np.asarray(self.model(x_dev, training=False))[:, 0]
        self.dev_accuracy.append(float(((p_positive > 0.5) == y_dev).mean()))


RECURRENT = {
    "LSTM (Keras)": lambda: keras.layers.LSTM(COMPARE_UNITS, return_sequences=True),
    "GRU (Keras)": lambda: keras.layers.GRU(COMPARE_UNITS, return_sequences=True),
    "GRU (nlptool)": lambda: GRU(COMPARE_UNITS, return_sequences=True),
}
comparison, curves = [], {}
for name, make in RECURRENT.items():
    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=(COMPARE_LENGTH,), dtype="int32"),
            keras.layers.Embedding(vocabulary, COMPARE_EMBEDDING, mask_zero=True),
            keras.layers.Bidirectional(make(), name="recurrent"),
            keras.layers.GlobalAveragePooling1D(),  # honours the mask: padding does not dilute the mean
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy", metrics=["accuracy"])
    watch = EpochWatch()
    model.fit(
        x_train, y_train, batch_size=COMPARE_BATCH, epochs=COMPARE_EPOCHS, callbacks=[watch], verbose=0, shuffle=True
    )
    curves[name] = watch.dev_accuracy
    later = watch.seconds[1:] or watch.seconds  # the first epoch also traces and compiles
    comparison.append(
        {
            "model": name,
            "recurrent parameters": model.get_layer("recurrent").count_params(),
            "all parameters": model.count_params(),
            "first epoch (s)": watch.seconds[0],
            "later epochs (s, mean)": float(np.mean(later)),
            "dev accuracy": watch.dev_accuracy[-1],
        }
    )
    print(f"{name}: {comparison[-1]['later epochs (s, mean)']:.1f} s an epoch, dev accuracy {curves[name][-1]:.4f}")
comparison = pd.DataFrame(comparison).set_index("model")
display(comparison.round({"first epoch (s)": 1, "later epochs (s, mean)": 1, "dev accuracy": 4}))

# %% [markdown]
# The parameter counts follow from the gate blocks. Per direction, a GRU with `reset_after=True` has
# $3\,(dH + H^2 + 2H)$ parameters (two bias vectors per gate) and an LSTM $4\,(dH + H^2 + H)$, for input size $d$
# and $H$ units:

# %%
d, h = COMPARE_EMBEDDING, COMPARE_UNITS
print(
    f"d = {d}, H = {h}: GRU 2 x {3 * (d * h + h * h + 2 * h):,}, LSTM 2 x {4 * (d * h + h * h + h):,}; "
    f"counted by Keras: GRU {comparison.loc['GRU (nlptool)', 'recurrent parameters']:,}, "
    f"LSTM {comparison.loc['LSTM (Keras)', 'recurrent parameters']:,}"
)
gru_acc, lstm_acc = comparison.loc["GRU (nlptool)", "dev accuracy"], comparison.loc["LSTM (Keras)", "dev accuracy"]
standard_error = np.sqrt(0.25 / len(y_dev))  # of an accuracy near 0.5 on this many sentences, at most
print(
    f"dev accuracy: nlptool GRU {gru_acc:.4f}, LSTM {lstm_acc:.4f}, a difference of "
    f"{abs(gru_acc - lstm_acc) * 100:.1f} points; one standard error of an accuracy on {len(y_dev)} sentences is "
    f"up to {standard_error * 100:.1f} points, so as a rough guide a difference below about "
    f"{2 * np.sqrt(2) * standard_error * 100:.1f} points (two standard errors of a difference) is within chance."
)
speed = comparison["later epochs (s, mean)"]
print(
    f"time an epoch relative to the LSTM: Keras GRU {speed['GRU (Keras)'] / speed['LSTM (Keras)']:.2f}, "
    f"nlptool GRU {speed['GRU (nlptool)'] / speed['LSTM (Keras)']:.2f}"
)

fig, axes = figure(1, 1, width=6, height=3.2)
axis = axes[0, 0]
for name, accuracies in curves.items():
    axis.plot(range(1, len(accuracies) + 1), accuracies, marker="o", color=COLOURS[name], label=name)
axis.set_xlabel("epoch")
axis.set_ylabel("dev accuracy")
axis.set_xticks(range(1, COMPARE_EPOCHS + 1))
axis.grid(True, color=GRID)
axis.legend()
axis.set_title("Same model, three recurrent layers", color=INK)
plt.show()

# %% [markdown]
# How to read this: one seed and one data size, so treat the accuracies as a single draw and the printed standard
# error as the scale of the noise. The parameter counts are exact, and the GRU's matrix work per step is about three
# quarters of the LSTM's (three weight blocks against four); the times per epoch show how much of that each
# implementation turns into speed, which depends on more than the arithmetic. The
# two Keras layers share the same generic recurrence on a CPU; `nlptool.layers.GRU` runs its fused, XLA-compiled
# path, whose first epoch includes the compilation. Larger shapes, measured in isolation against
# `keras.layers.GRU` and `torch.nn.GRU`, are in `docs/benchmarks.md` (GRU section). In its published run
# (2 CPU cores), nlptool's forward plus backward pass was level with Keras's at batch 64 and 128 (0.96x to 1.01x),
# 1.65x faster at (batch 32, 50 steps, 256 inputs, 512 units), and at batch 1 the forward pass was about 5x
# faster.
#
# ## 5. Why cuDNN needs `reset_after=True`
#
# Look at one step of the two variants in `gru_step` above. The input products $x_t W$ do not depend on the state,
# so any implementation computes them for all time steps at once, as one large matrix product before the loop.
# What remains inside the loop is the recurrent part, which cannot be parallelised over time:
#
# - **`reset_after=True`** (cuDNN, PyTorch, the Keras default): $h_{t-1} U$ for all three gates is **one** matrix
#   product, (batch, units) × (units, 3·units); $r_t$ then multiplies its third block element-wise. One GEMM per
#   step, followed by element-wise work that can be fused into one kernel.
# - **`reset_after=False`** (Cho et al.'s original): the candidate needs $(r_t \odot h_{t-1}) U_h$, and $r_t$ is
#   only known after the first product $h_{t-1} [U_z, U_r]$. So every step has **two dependent** products with an
#   element-wise step between them: the second cannot start before the first has finished, and two smaller
#   GEMMs keep a GPU less busy than one large one.
#
# cuDNN implements only the first form (its `CUDNN_GRU` mode); that is why `keras.layers.GRU` and
# `nlptool.layers.GRU` only take the cuDNN path with `reset_after=True`. nlptool's layer says so itself:

# %%
for reset_after in (True, False):
    unmet = GRU(8, reset_after=reset_after).cudnn_unmet_conditions(check_device=False)
    print(f"reset_after={reset_after}: conditions for cuDNN not met (leaving the device aside): {unmet or 'none'}")

# %% [markdown]
# Are the two forms just two ways of writing the same thing? No: $r \odot (h U_h) \ne (r \odot h) U_h$ unless $U_h$
# is diagonal, and the `reset_after=True` form has the extra recurrent bias $c_h$ inside the gate. We take the
# trained weights and run them both ways over the dev sentences. The `reset_after=False` layer has a single bias
# vector; we give it $b + c$, which is exact for $z$ and $r$ (their biases are simply added), so every difference
# comes from where the reset gate sits. Both forms are computed by our NumPy steps and by `nlptool.layers.GRU`.

# %%
merged_bias = bias[0] + bias[1]
original = GRU(n, return_sequences=True, reset_after=False)
original.build((None, None, inputs.shape[-1]))
original.set_weights([kernel, recurrent_kernel, merged_bias])
after_outputs = np.asarray(nlptool_gru(inputs, mask=mask))
before_outputs = np.asarray(original(inputs, mask=mask))

numpy_before = [
    gru_sequence(embedding[row][None], *weights[:2], merged_bias.astype("float64"), reset_after=False)[0][0]
    for row in batch_ids
]
print(
    "reset_after=False, max |nlptool - NumPy| = "
    f"{max(np.abs(before_outputs[i, : len(r)] - r).max() for i, r in enumerate(numpy_before)):.1e}"
)
gap = np.abs(after_outputs - before_outputs)[mask]
final_gap = np.array([np.abs(after_outputs[i, k - 1] - before_outputs[i, k - 1]).max() for i, k in enumerate(lengths)])
print(
    f"same weights, after vs before: mean |difference| {gap.mean():.3f} and max {gap.max():.3f} over all states; "
    f"in the final state of a sentence, the largest unit difference has a median of {np.median(final_gap):.3f}; "
    f"the states themselves lie in [-1, 1] with a mean size of {np.abs(after_outputs[mask]).mean():.3f}"
)
rounding = agreement.to_numpy().max()
print(f"the largest gap is {gap.max() / rounding:,.0f} times the largest difference between the libraries in section 3")

# %% [markdown]
# Set the gaps against the rounding differences of section 3 (the last line gives the ratio): the two variants are
# different functions of the same weights, and weights trained in one form do not carry over to the other. Moving a
# model from `reset_after=False` to a GPU's cuDNN kernel therefore means training it again. As models, the two are
# reported to be about equally good: the TensorFlow 1.x documentation of its cuDNN-compatible GRU cell says that
# NVIDIA chose the "after" variant on the suggestion of the GRU's authors and because it had no accuracy impact.
# This is why nlptool (like Keras and PyTorch) uses `reset_after=True` by default: weights move between cuDNN,
# Keras and PyTorch unchanged, and a GPU runs the fast kernel.
#
# ## Where next
#
# - `docs/guide/gru.md`: the layer's options, masks, its three implementations and conversions to and from
#   `torch.nn.GRU` (`nlptool.layers.gru_convert`, bidirectional layers included).
# - `docs/benchmarks.md`: the GRU's speed against `keras.layers.GRU` and `torch.nn.GRU` at several shapes, and the
#   sentiment benchmarks with the full sst2 config.
# - The gates of a bidirectional model (the shipped `sst2` config as it is): its two GRUs are
#   `model.get_layer("bidirectional_0").forward_layer` and `.backward_layer`; the backward one reads each sentence
#   reversed.
