# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Serving: export, the REST API, latency
#
# A model is only useful once something can ask it questions. This notebook
# takes a sentiment classifier from training to an HTTP endpoint and measures
# what the endpoint costs:
#
# 1. train a small classifier on SST-2 with the shipped `sst2` config;
# 2. **export** it as a numbered SavedModel version (`export/1`) that takes raw strings;
# 3. **inspect** the export with plain TensorFlow: its signatures, what `serving_default`
#    takes and returns, and a call to it without nlptool;
# 4. start **`nlptool serve`** as a separate process and talk to it over HTTP with `httpx`,
#    using TF Serving's REST API: model status, metadata, `:predict` in the row (`instances`)
#    and columnar (`inputs`) formats, and what a malformed request gets back;
# 5. measure **latency** at batch sizes 1, 8 and 64 over HTTP and in process, and see where
#    the difference goes;
# 6. see how the same export directory loads in TF Serving itself.
#
# Runs in about 3 minutes on a 2-core CPU at full size.

# %% [markdown]
# ## Setup
#
# `SMOKE` shrinks everything (a few hundred training sentences, one epoch, a
# handful of timed requests) so that the notebook can be tested quickly; the
# full size trains on all of SST-2. Everything this notebook writes goes under
# `runs/notebooks/07-serving/` in the repository.

# %%
import atexit
import json
import os
import signal

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TensorFlow's C++ log: fatal errors only (set before its import)

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

import nlptool
from nlptool.data import datasets  # the dataset registry: SST-2's dev sentences for the latency test

SMOKE = os.environ.get("NLPTOOL_NOTEBOOK_SMOKE") == "1"

MAX_TRAIN_EXAMPLES = 300 if SMOKE else None  # None: all of SST-2's training rows
if SMOKE:  # one epoch of a tiny model
    OVERRIDES = ["training.epochs=1", "model.units=16", "model.embedding_dim=16"]
else:  # the sst2 config's model, for at most two epochs or four minutes
    OVERRIDES = ["training.epochs=2", "training.max_minutes=4"]
BATCH_SIZES = [1, 8, 64]
REQUESTS = 10 if SMOKE else 300  # timed requests per batch size, over HTTP and in process alike
WARMUP = 3 if SMOKE else 20  # untimed requests first (first calls trace and allocate)

ROOT = Path.cwd().resolve()
while not (ROOT / "pyproject.toml").is_file():
    if ROOT.parent == ROOT:
        raise RuntimeError("Run this notebook from inside the nlptool repository.")
    ROOT = ROOT.parent
os.chdir(ROOT)  # the paths below, and those nlptool prints, are relative to the repository
RUN_DIR = Path("runs") / "notebooks" / "07-serving" / "sst2"
if not os.environ.get("NLPTOOL_DATA_DIR"):
    print("NLPTOOL_DATA_DIR is not set: datasets are looked for in the cache (and downloaded if missing).")

print("Smoke size" if SMOKE else "Full size")
print(f"run directory: {RUN_DIR}")

# %% [markdown]
# ## 1. Train a classifier worth serving
#
# `nlptool.train` is what `nlptool train sentiment --dataset sst2 --config sst2`
# runs: a word tokeniser, an embedding, a bidirectional GRU and a classifier.
# The number of epochs is capped (plus a wall-clock budget,
# `training.max_minutes`) so that the notebook stays short; SST-2's dev set is
# the test split, evaluated at the end.

# %%
start = time.perf_counter()
run = nlptool.train(
    "sentiment",
    RUN_DIR,
    dataset="sst2",
    config="sst2",
    overrides=OVERRIDES,
    max_train_examples=MAX_TRAIN_EXAMPLES,
    overwrite=True,
    verbose=2,
)
print(f"trained in {time.perf_counter() - start:.0f} s")
print(f"{run.metrics['split']}: {run.metrics['examples']:,} sentences, accuracy {run.metrics['accuracy']:.4f}")

# %% [markdown]
# ## 2. Export: a model folder of numbered versions
#
# `run.export()` (the CLI: `nlptool export RUN_DIR`) writes the next version of
# the model folder `RUN_DIR/export`: `export/1` now, `export/2` the next time.
# That is the layout TF Serving watches; it serves the highest number. Each
# version is written to a hidden staging folder, loaded back with both
# TensorFlow loaders (`tf.saved_model.load` and the session loader that TF
# Serving uses), and only then renamed into place, so a server polling the
# folder never sees half a model.

# %%
version_dir = run.export()
EXPORT = version_dir.parent  # the model folder: what `nlptool serve` and TF Serving are given
print(f"wrote {version_dir}")
files = sorted(p for p in version_dir.rglob("*") if p.is_file())
pd.DataFrame(
    {"file": [str(p.relative_to(version_dir)) for p in files], "bytes": [p.stat().st_size for p in files]}
).set_index("file")

# %% [markdown]
# `saved_model.pb` holds the graphs (the tokeniser included: the export takes
# raw strings), `variables/` the weights, `assets/` the vocabulary, and
# `assets.extra/nlptool.json` a small record nlptool reads back (the task and
# the signature names). TF Serving ignores the last.

# %%
print(json.dumps(json.loads((version_dir / "assets.extra" / "nlptool.json").read_text()), indent=2))

# %% [markdown]
# ## 3. The export with plain TensorFlow
#
# Nothing below needs nlptool: the SavedModel holds the tokeniser, the model
# and the class names in one graph. Loading it gives its **signatures**, the
# named functions a model server exposes.

# %%
saved = tf.saved_model.load(str(version_dir))


def describe(spec):
    return f"{spec.dtype.name} {spec.shape.as_list()}"


rows = []
for name, function in saved.signatures.items():
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    rows.append(
        {
            "signature": name,
            "inputs": ", ".join(f"{key}: {describe(spec)}" for key, spec in inputs.items()) or "(none)",
            "outputs": ", ".join(f"{key}: {describe(spec)}" for key, spec in outputs.items()),
        }
    )
pd.DataFrame(rows).set_index("signature")

# %% [markdown]
# - **`serving_default`** takes `text`, a batch of strings of shape `[None]`
#   (any number of them, raw: no tokenising on the client), and returns
#   `label` (the class name of each text, a string) and `probabilities`
#   (one row of class probabilities per text).
# - **`class_names`** takes nothing and returns the class of each column of
#   `probabilities`.
#
# Calling a signature takes keyword arguments named as its inputs and returns a
# dict of tensors:

# %%
examples = [
    "a warm, funny and moving film",
    "a dull, lifeless mess that overstays its welcome",
    "",  # any string is answered, the empty one included
]
serving_default = saved.signatures["serving_default"]
outputs = serving_default(text=tf.constant(examples))
class_names = [name.decode() for name in saved.signatures["class_names"]()["class_names"].numpy()]
print("class_names:", class_names)
pd.DataFrame(
    outputs["probabilities"].numpy(),
    columns=[f"p({name})" for name in class_names],
    index=pd.Index(examples, name="text"),
).assign(label=[label.decode() for label in outputs["label"].numpy()])

# %% [markdown]
# `nlptool.load` on the model folder (its highest version) gives the same
# numbers through nlptool's own `predict`, which calls these signatures:

# %%
via_nlptool = nlptool.load(EXPORT).predict(examples)
for text, row, probabilities in zip(examples, via_nlptool, outputs["probabilities"].numpy()):
    same = np.allclose([row["probabilities"][name] for name in class_names], probabilities)
    print(f"{row['label']:>9s} {row['probability']:.4f}  same as plain TensorFlow: {same}  {text!r}")

# %% [markdown]
# ## 4. `nlptool serve`: TF Serving's REST API
#
# `nlptool serve EXPORT` loads the export's highest version with
# `tf.saved_model.load`, as above, and answers HTTP with the endpoints and
# bodies of TF Serving's REST API, so a client written against it works
# unchanged against TF Serving. We start it as a real separate process, as in
# production: on a free port, with its log (one line per request) in a file,
# and wait until it answers. `atexit` stops it if the notebook dies
# midway; the last cell stops it in any case.

# %%
with socket.socket() as probe:  # a port nothing listens on
    probe.bind(("127.0.0.1", 0))
    PORT = probe.getsockname()[1]

server_log_path = RUN_DIR / "serve.log"
server_log = open(server_log_path, "w")
server = subprocess.Popen(
    [sys.executable, "-m", "nlptool.cli", "serve", str(EXPORT), "--port", str(PORT)],
    stdout=server_log,
    stderr=subprocess.STDOUT,
    env={**os.environ, "PYTHONUNBUFFERED": "1"},
)


def stop_server():
    if server.poll() is None:
        server.terminate()  # uvicorn shuts down cleanly on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    server_log.close()


atexit.register(stop_server)

BASE = f"http://127.0.0.1:{PORT}"
MODEL = f"{BASE}/v1/models/sentiment"  # the model name is the task unless --model-name
client = httpx.Client(timeout=60, trust_env=False)  # trust_env=False: never through a proxy

start = time.perf_counter()
try:
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{server_log_path.read_text()}")
        if time.perf_counter() - start > 180:
            raise RuntimeError(f"the server did not answer within 180 s:\n{server_log_path.read_text()}")
        try:
            if client.get(MODEL).status_code == 200:
                break
        except httpx.TransportError:  # not listening yet
            pass
        time.sleep(0.25)
except Exception:
    stop_server()
    raise
print(f"the server answered after {time.perf_counter() - start:.1f} s; its first words:")
print(server_log_path.read_text().strip())

# %% [markdown]
# ### Status and metadata
#
# `GET /v1/models/NAME` is the model's status (the versions it serves and
# their state), `GET /v1/models/NAME/metadata` its signature definitions, in
# TF Serving's own JSON:

# %%
status = client.get(MODEL)
print(status.status_code, json.dumps(status.json(), indent=2))

# %%
metadata = client.get(f"{MODEL}/metadata").json()
print("model_spec:", metadata["model_spec"])
signature_defs = metadata["metadata"]["signature_def"]["signature_def"]
print(json.dumps(signature_defs["serving_default"], indent=2))

# %% [markdown]
# The same signatures as TensorFlow showed, in the SignatureDef's terms:
# `DT_STRING` with a dimension of size `-1` (any batch) in, `DT_STRING` labels
# and `DT_FLOAT` probabilities out, and TF Serving's method name for predict.
# A generic client can build its requests from this alone.

# %% [markdown]
# ### `:predict`, row format (`instances`)
#
# One entry per row; a bare value is enough when the signature has one input.
# The answer is `predictions`, one object per row with every output:

# %%
response = client.post(f"{MODEL}:predict", json={"instances": examples})
print(response.status_code)
print(json.dumps(response.json(), indent=2))

# %% [markdown]
# ### `:predict`, columnar format (`inputs`)
#
# Each input as a whole tensor, named (or bare, for a single input); the answer
# is `outputs`, one entry per output with its whole tensor. `signature_name`
# picks a signature other than `serving_default`: `class_names` has no inputs,
# so its request is an empty `inputs` object.

# %%
response = client.post(f"{MODEL}:predict", json={"inputs": {"text": examples}})
print(response.status_code, json.dumps(response.json()))
http_probabilities = np.array(response.json()["outputs"]["probabilities"])
difference = np.abs(http_probabilities - outputs["probabilities"].numpy()).max()
print(f"largest difference from the in-process call: {difference:.2g}")

response = client.post(f"{MODEL}:predict", json={"signature_name": "class_names", "inputs": {}})
print(response.status_code, response.json())

# %% [markdown]
# ### Malformed requests
#
# Every request is checked against the signature before it reaches the model
# (names, types, shapes, sizes), and anything wrong is a 400 with TF Serving's
# error body, `{"error": "..."}`, that says what to fix; an unknown model or
# path is a 404. A number where the signature wants a string:

# %%
response = client.post(f"{MODEL}:predict", json={"instances": ["a fine film", 42]})
print(response.status_code, response.json())

# %% [markdown]
# A few more ways to get it wrong:

# %%
mistakes = {
    "not JSON": dict(content=b"instances: [a fine film]"),
    "neither instances nor inputs": dict(json={"texts": ["a fine film"]}),
    "both instances and inputs": dict(json={"instances": ["a"], "inputs": ["a"]}),
    "unknown input name": dict(json={"instances": [{"review": "a fine film"}]}),
    "unknown signature": dict(json={"signature_name": "classify", "instances": ["a fine film"]}),
    "a matrix of strings": dict(json={"inputs": [["a", "fine"], ["film", "!"]]}),
}
answers = []
for what, request in mistakes.items():
    response = client.post(f"{MODEL}:predict", **request)
    answers.append({"request": what, "status": response.status_code, "error": response.json()["error"]})
response = client.post(f"{BASE}/v1/models/sentiment-v2:predict", json={"instances": ["a fine film"]})
answers.append({"request": "unknown model name", "status": response.status_code, "error": response.json()["error"]})
pd.set_option("display.max_colwidth", None)
pd.DataFrame(answers).set_index("request")

# %% [markdown]
# ## 5. Latency: HTTP against in process
#
# How long does one request take? We send `REQUESTS` requests one after
# another (one connection, kept alive) for batches of 1, 8 and 64 sentences
# from SST-2's dev set, and time each from the client's side: building the
# JSON, the HTTP round trip, and decoding the answer. The baseline is the same
# SavedModel called in this process, from a list of strings to numpy arrays,
# exactly what the server itself does once it has a request in hand.
#
# The sentences come from nlptool's dataset registry (`NLPTOOL_DATA_DIR`).

# %%
sentences = datasets.load("sst2", "dev")["text"].tolist()
print(f"{len(sentences):,} dev sentences, e.g. {sentences[0]!r}")


def batch_of(i, size):
    """The i-th batch of `size` sentences, cycling through the dev set."""
    start = (i * size) % len(sentences)
    return [sentences[(start + k) % len(sentences)] for k in range(size)]


def over_http(batch):
    response = client.post(f"{MODEL}:predict", json={"instances": batch})
    response.raise_for_status()
    return response.json()["predictions"]


def in_process(batch):
    result = serving_default(text=tf.constant(batch))
    return {name: value.numpy() for name, value in result.items()}


def timed(call, size):
    for i in range(WARMUP):
        call(batch_of(i, size))
    times = []
    for i in range(REQUESTS):
        batch = batch_of(WARMUP + i, size)
        start = time.perf_counter()
        call(batch)
        times.append(1e3 * (time.perf_counter() - start))
    return np.array(times)


times = {}
for size in BATCH_SIZES:
    times["HTTP", size] = timed(over_http, size)
    times["in process", size] = timed(in_process, size)
print(f"timed {REQUESTS} requests per batch size and path, after {WARMUP} untimed ones")

# %% [markdown]
# The server's log has one line per request with its own time for it, from
# the moment the request reaches the application to the response it returns:
# reading and parsing the JSON, checking it, the model call on the model
# thread, and writing the JSON answer. What is left of the client's time is
# the transport: HTTP framing and parsing, the loopback socket, and `httpx`
# on the client. We read the last `REQUESTS` predict lines per batch size:

# %%
server_times = {size: [] for size in BATCH_SIZES}
for line in server_log_path.read_text().splitlines():
    # e.g. 2026-01-01T12:00:00 127.0.0.1 "POST /v1/models/sentiment:predict" 200 1.9 ms rows=8
    if ":predict" in line and '" 200 ' in line:
        milliseconds, rows = line.split('" 200 ')[1].split(" ms rows=")
        if int(rows) in server_times:
            server_times[int(rows)].append(float(milliseconds))
for size in BATCH_SIZES:
    times["server's own time", size] = np.array(server_times[size][-REQUESTS:])

table = pd.DataFrame(
    [
        {
            "batch": size,
            "path": path,
            "median (ms)": np.median(values),
            "p90 (ms)": np.percentile(values, 90),
            "median per sentence (ms)": np.median(values) / size,
        }
        for (path, size), values in times.items()
    ]
).pivot(index="batch", columns="path")
table.round(2)

# %%
overhead = pd.DataFrame(
    {
        "HTTP median - in process (ms)": table["median (ms)", "HTTP"] - table["median (ms)", "in process"],
        "server's work around the model (ms)": (
            table["median (ms)", "server's own time"] - table["median (ms)", "in process"]
        ),
        "transport (ms)": table["median (ms)", "HTTP"] - table["median (ms)", "server's own time"],
        "HTTP / in process": table["median (ms)", "HTTP"] / table["median (ms)", "in process"],
    }
)
overhead.round(2)

# %%
COLOURS = {"in process": "#1f77b4", "server's own time": "#2ca02c", "HTTP": "#d62728"}

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), facecolor="white")
for path, colour in COLOURS.items():
    left.plot(BATCH_SIZES, table["median (ms)", path], "o-", color=colour, label=f"{path}, median")
    left.plot(BATCH_SIZES, table["p90 (ms)", path], "o--", color=colour, alpha=0.6, label=f"{path}, p90")
left.set(xscale="log", yscale="log", xlabel="sentences per request", ylabel="latency per request (ms)")
left.set_xticks(BATCH_SIZES, [str(size) for size in BATCH_SIZES])
left.set_title("One request at a time", color="black")
left.legend(fontsize=8, facecolor="white", labelcolor="black")

positions = np.arange(len(BATCH_SIZES))
model_part = table["median (ms)", "in process"].to_numpy()
server_part = overhead["server's work around the model (ms)"].clip(lower=0).to_numpy()
transport_part = overhead["transport (ms)"].clip(lower=0).to_numpy()
right.bar(positions, model_part, color=COLOURS["in process"], label="the model (in process)")
right.bar(positions, server_part, bottom=model_part, color=COLOURS["server's own time"], label="server: JSON, checks")
right.bar(positions, transport_part, bottom=model_part + server_part, color=COLOURS["HTTP"], label="transport")
right.set_xticks(positions, [str(size) for size in BATCH_SIZES])
right.set(xlabel="sentences per request", ylabel="median latency (ms)")
right.set_title("Where an HTTP request's time goes (medians)", color="black")
right.legend(fontsize=8, facecolor="white", labelcolor="black")
for axes in (left, right):
    axes.set_facecolor("white")
    axes.tick_params(colors="black", which="both")
    axes.xaxis.label.set_color("black")
    axes.yaxis.label.set_color("black")
    for spine in axes.spines.values():
        spine.set_color("black")
    axes.grid(True, which="major", color="#cccccc", linewidth=0.6)
fig.tight_layout()
plt.show()

# %% [markdown]
# What the difference is. The model's work is the same on both paths: the
# server calls the very signature we called in process. Everything else is
# the price of putting a network API in front of it:
#
# - **JSON both ways.** The client encodes the sentences as JSON; the server
#   parses it, checks every value against the signature (type, shape, length)
#   and builds a string tensor; it then turns the outputs back into Python
#   lists and JSON, and the client decodes that. This work is per row, so
#   expect it to grow with the batch (the green part of the bars).
# - **HTTP and the event loop.** Framing and parsing the request and the
#   response, the loopback socket, and the hand-over from the server's event
#   loop to the thread that runs the model (the red part). This is a roughly
#   fixed cost per request, which is why the gap matters most for one
#   sentence a request and is spread thin over 64.
# - **Two processes on the same cores.** The client and the server share this
#   machine's CPU, so the client's own work competes with the server's.
#
# Read the tables above for this machine's numbers: the ratio
# "HTTP / in process" shows how much of a request's latency the API costs at
# each batch size. Batching rows into one request is the lever a client has;
# the server has another: concurrent row-format requests to one signature are
# merged into one model call (up to `--max-batch-size` rows, 64 by default),
# which these one-at-a-time requests never trigger. For the server under
# concurrent load, see [Benchmarks, "Serving"](../docs/benchmarks.md#serving).

# %% [markdown]
# ## 6. The same export in TF Serving
#
# Nothing above is specific to `nlptool serve`. The model folder is laid out
# as TF Serving expects (numbered versions, the highest served), the export is
# verified with TF Serving's session loader when it is written, and the word
# tokeniser used here needs only core TensorFlow ops. So, as
# `docs/serving.md` shows (not run here):
#
# ```sh
# docker run --rm -p 8501:8501 -v "$PWD/runs/notebooks/07-serving/sst2/export:/models/sentiment" \
#     -e MODEL_NAME=sentiment tensorflow/serving
# ```
#
# serves it at the same URLs, `http://localhost:8501/v1/models/sentiment:predict`,
# so every request in this notebook works against it unchanged (SentencePiece
# and WordPiece exports need a model server that links tensorflow-text's ops).
# `saved_model_cli show --dir runs/notebooks/07-serving/sst2/export/1 --all`
# prints the signatures as TensorFlow's own tool sees them.
#
# ## Stop the server
#
# The server's log ends with one line per request; then we stop it.

# %%
client.close()
log_lines = server_log_path.read_text().splitlines()
print(f"{len(log_lines)} log lines; the last three:")
print("\n".join(log_lines[-3:]))
stop_server()
ended = "by the SIGTERM, after a clean shutdown" if server.returncode == -signal.SIGTERM else server.returncode
print(f"server stopped ({ended})")
