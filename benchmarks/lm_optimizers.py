"""Adam against SGD for a word language model whose GRU states are carried
across windows (truncated BPTT), and Adam with the state reset every window.

A 1 x GRU 64 untied PTB model on the first 224,000 training tokens (200
windows of 32 x 35), three passes, no dropout; prints the training
perplexity of each pass and the mean |state| at the end (near 1 means the
units saturated), and writes benchmarks/results/lm_optimizers.json. This is
the measurement behind the SGD default of the word
configs (see README, "Language models"):

    python benchmarks/lm_optimizers.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import tasks
from nlptool.models.language_model import build_model, token_stream, window_dataset
from nlptool.tasks.base import DataSource
from nlptool.tasks.language_model import LanguageModelConfig

BATCH, WINDOW, WINDOWS, UNITS = 32, 35, 200, 64
OUT = Path(__file__).resolve().parent / "results" / "lm_optimizers.json"


def run(optimizer, reset_every_window, tokenizer, stream):
    config = config_lib.resolve(
        LanguageModelConfig,
        [],
        [
            f"model.units={UNITS}",
            f"model.embedding_dim={UNITS}",
            "model.layers=1",
            "model.dropout=0",
            "model.tie_weights=false",
        ],
    )
    keras.utils.set_random_seed(1)
    model = build_model(config, tokenizer.vocabulary_size())
    model.carry_states(BATCH)
    model.compile(optimizer=optimizer, jit_compile=False)
    data = window_dataset(stream, BATCH, WINDOW)
    if reset_every_window:
        data = data.map(lambda x, y: ((x[0], tf.constant(True)), y))
    history = model.fit(data, epochs=3, verbose=0)
    state = float(np.abs(model._carried[0].numpy()).mean())
    return [round(p, 1) for p in history.history["perplexity"]], round(state, 2)


def main():
    config = config_lib.resolve(LanguageModelConfig, [], ["tokenizer.vocab_size=10002"])
    task = tasks.get("language-model")
    splits = task.read_data(DataSource(dataset="ptb"), config)
    tokenizer = task.prepare(config, splits)[1].tokenizers["text"]  # learnt from the training lines
    stream = token_stream(tokenizer, splits.train, "line")[: BATCH * WINDOW * WINDOWS + 1]
    rows = []
    for name, optimizer, reset in [
        ("Adam 1e-2", keras.optimizers.Adam(1e-2), False),
        ("SGD 20, clip 0.25", keras.optimizers.SGD(20.0, global_clipnorm=0.25), False),
        ("Adam 1e-2", keras.optimizers.Adam(1e-2), True),
    ]:
        perplexities, state = run(optimizer, reset, tokenizer, stream)
        rows.append({"optimizer": name, "state_reset_every_window": reset, "perplexity": perplexities, "state": state})
    OUT.write_text(json.dumps({"benchmark": "lm_optimizers", "tokens": len(stream) - 1, "rows": rows}, indent=2) + "\n")
    print("| optimizer | state | perplexity per pass | mean abs(state) |")
    print("|---|---|---|---:|")
    for r in rows:
        state = "reset every window" if r["state_reset_every_window"] else "carried"
        print(f"| {r['optimizer']} | {state} | {r['perplexity']} | {r['state']} |")


if __name__ == "__main__":
    main()
