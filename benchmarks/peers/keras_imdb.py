"""Peer for the sentiment task: the Keras bidirectional-RNN example on IMDB, with a GRU.

Follows "Bidirectional LSTM on IMDB" (https://keras.io/examples/nlp/bidirectional_lstm_imdb/), written
anew in Keras 3 on TensorFlow: word ids padded and truncated with `keras.utils.pad_sequences` and its
defaults ("pre": the padding goes in front and a long review keeps its end), no masking, an Embedding,
a bidirectional RNN, Dense(1, sigmoid), Adam at its default learning rate, binary cross-entropy, and
`model.fit` with validation data after each epoch.

Set to nlptool's shipped IMDB config (nlptool/configs/sentiment_imdb.yaml) rather than the example's
sizes, so that throughput compares like with like:
- one Bidirectional(GRU(128)) instead of the example's two stacked Bidirectional(LSTM(64));
- a vocabulary of 20,000 (the example's too) and 800 tokens per review (the example keeps 200);
- batch 64 (the example's is 32);
- validation on 10 % of the training reviews, held out stratified (the example validates on the test set).

The example reads Keras's pre-tokenised copy of IMDB; here the raw reviews (data_dir()/imdb/{train,test}.csv)
go through `keras.layers.TextVectorization` (default standardisation: lowercase, punctuation stripped),
adapted on the training reviews, before the deadline starts. The example trains for 2 epochs; here a
`Deadline` stops `model.fit` after the training step on which it passes (see common.py). Keras still runs
that epoch's validation after the stop; it counts in neither `train_seconds` nor the result (the example
keeps the last weights, as here), like the untimed evaluation of the other peers.

Run it:

    python benchmarks/peers/keras_imdb.py --seconds 1800 [--seed 1] [--limit N]
"""

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported
sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, when run as a script or imported

import keras
import pandas as pd
from common import Deadline, command_line, data_dir
from sklearn.model_selection import train_test_split

NAME = "Keras bidirectional RNN example (GRU)"
TASK = "sentiment"

CONFIG = {
    "max_tokens": 20000,
    "max_length": 800,
    "padding": "pre",
    "truncating": "pre",
    "embedding_dim": 128,
    "rnn": "GRU",
    "units": 128,
    "bidirectional": True,
    "optimizer": "adam",
    "learning_rate": 0.001,  # Adam's default
    "batch_size": 64,
    "validation_fraction": 0.1,
}
MAX_EPOCHS = 100  # never reached: the deadline ends the training


# --- data -------------------------------------------------------------------------------------------------------


def read_split(name, limit=None):
    """Texts and 0/1 labels of the first `limit` rows of imdb/<name>.csv."""
    frame = pd.read_csv(data_dir() / "imdb" / f"{name}.csv", nrows=limit)
    return frame["text"].tolist(), frame["label"].to_numpy(dtype="int32")


def vectorize(vectorizer, texts):
    """Each text's ids, padded and truncated at the front to `max_length`, as the example does."""
    ids = vectorizer(texts).to_list()  # ragged: no padding yet
    return keras.utils.pad_sequences(
        ids, maxlen=CONFIG["max_length"], padding=CONFIG["padding"], truncating=CONFIG["truncating"]
    )


def load_imdb(seed, limit=None):
    """(train, validation, test) as (ids, labels) pairs, with a vectorizer adapted on the training texts."""
    texts, labels = read_split("train", limit)
    train_texts, val_texts, train_labels, val_labels = train_test_split(
        texts, labels, test_size=CONFIG["validation_fraction"], stratify=labels, random_state=seed
    )
    test_texts, test_labels = read_split("test", limit)
    vectorizer = keras.layers.TextVectorization(max_tokens=CONFIG["max_tokens"], ragged=True)
    vectorizer.adapt(train_texts, batch_size=1024)
    return (
        (vectorize(vectorizer, train_texts), train_labels),
        (vectorize(vectorizer, val_texts), val_labels),
        (vectorize(vectorizer, test_texts), test_labels),
    )


# --- model and training -----------------------------------------------------------------------------------------


def build_model():
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(CONFIG["max_tokens"], CONFIG["embedding_dim"])(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(CONFIG["units"]))(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(CONFIG["learning_rate"]), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


class DeadlineStop(keras.callbacks.Callback):
    """Stops `fit` after the training step (or validation) on which the deadline passes; counts steps, examples."""

    def __init__(self, deadline, train_size, batch_size):
        super().__init__()
        self.deadline = deadline
        self.train_size = train_size
        self.batch_size = batch_size
        self.steps = 0
        self.examples = 0
        self.stopped_at = None  # the deadline's elapsed time when training stopped

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.examples += min(self.batch_size, self.train_size - batch * self.batch_size)  # the last batch is short
        self.stop_if_passed()

    def on_epoch_end(self, epoch, logs=None):
        self.stop_if_passed()  # the epoch's validation ran past the deadline: no further step

    def stop_if_passed(self):
        if self.stopped_at is None and self.deadline.passed():
            self.stopped_at = self.deadline.elapsed()
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_at is None:  # all the epochs ran before the deadline
            self.stopped_at = self.deadline.elapsed()


def run(seconds, seed, limit=None):
    keras.utils.set_random_seed(seed)
    (x_train, y_train), validation, (x_test, y_test) = load_imdb(seed, limit)
    model = build_model()

    deadline = Deadline(seconds)
    stopper = DeadlineStop(deadline, len(x_train), CONFIG["batch_size"])
    model.fit(
        x_train,
        y_train,
        batch_size=CONFIG["batch_size"],
        epochs=MAX_EPOCHS,
        validation_data=validation,
        callbacks=[stopper],
        verbose=0,  # stdout carries the JSON result
    )

    _, test_accuracy = model.evaluate(x_test, y_test, batch_size=CONFIG["batch_size"], verbose=0)
    steps_per_epoch = math.ceil(len(x_train) / CONFIG["batch_size"])
    return {
        "train_seconds": stopper.stopped_at,
        "epochs": stopper.steps / steps_per_epoch,  # full epochs plus the share of the last one
        "train_units": stopper.examples,
        "quality": {"accuracy": float(test_accuracy)},
        "config": {
            **CONFIG,
            "train_examples": len(x_train),
            "validation_examples": len(validation[0]),
            "test_examples": len(x_test),
            "seed": seed,
            "limit": limit,
        },
    }


if __name__ == "__main__":
    command_line(run, __doc__.splitlines()[0])
