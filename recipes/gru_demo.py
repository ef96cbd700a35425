"""
# The nlptool GRU on real data: SST-2 sentiment in a few minutes

`make demo` runs this script. It trains a small bidirectional GRU classifier
on the SST-2 sentences, reports dev accuracy, shows that its weights drop
into `keras.layers.GRU` unchanged, and classifies a few sentences from raw
strings. Until nlptool's own tokenisers and the sentiment recipe land, it uses
Keras's `TextVectorization`.

Data: `$NLPTOOL_DATA_DIR/sst2/{train,dev}.tsv` (the GLUE files). Without them
the script says so and trains on the small hand-written sample in
`data/sample_sentiment.csv`, which shows the mechanics, not the accuracy.
"""

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from nlptool.layers import GRU

max_train = int(os.environ.get("DEMO_MAX_TRAIN", 67_349))  # training sentences used (all of SST-2)
epochs = 2  # passes over the training sentences
batch_size = 64  # sentences per step
vocab_size = 20_000  # most frequent words kept; the rest map to [UNK]
units = 64  # GRU state size per direction
keras.utils.set_random_seed(1234)

"""
## Prepare the data
"""

data_dir = Path(os.environ.get("NLPTOOL_DATA_DIR", "data"))
sst2 = data_dir / "sst2"
if (sst2 / "train.tsv").exists() and (sst2 / "dev.tsv").exists():
    # quoting=3: SST-2 sentences contain bare double quotes
    train = pd.read_csv(sst2 / "train.tsv", sep="\t", quoting=3).head(max_train)
    dev = pd.read_csv(sst2 / "dev.tsv", sep="\t", quoting=3)
    train_texts, train_labels = train["sentence"].tolist(), train["label"].to_numpy()
    dev_texts, dev_labels = dev["sentence"].tolist(), dev["label"].to_numpy()
    source = f"SST-2 from {sst2} ({len(train_texts):,} train / {len(dev_texts):,} dev sentences)"
else:
    sample = Path(__file__).resolve().parent.parent / "data" / "sample_sentiment.csv"
    print(f"SST-2 not found under {sst2} (set NLPTOOL_DATA_DIR); using the small sample {sample.name}.")
    frame = pd.read_csv(sample)
    labels = (frame["label"] == "positive").astype(int).to_numpy()
    train_texts, train_labels = frame["text"].tolist()[:30], labels[:30]
    dev_texts, dev_labels = frame["text"].tolist()[30:], labels[30:]
    epochs = 30
    source = f"the sample CSV ({len(train_texts)} train / {len(dev_texts)} held-out sentences)"
print(f"Data: {source}")

vectorizer = keras.layers.TextVectorization(max_tokens=vocab_size)
vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_texts).batch(1024))


def to_ids(texts, labels):
    return vectorizer(texts), labels


train_ds = (
    tf.data.Dataset.from_tensor_slices((train_texts, train_labels))
    .shuffle(len(train_texts), seed=1234)
    .batch(batch_size)
    .map(to_ids, num_parallel_calls=tf.data.AUTOTUNE)  # ids padded to the batch's longest sentence
    .prefetch(tf.data.AUTOTUNE)
)
dev_ds = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(256).map(to_ids)

"""
## Build the model

Embedding with `mask_zero=True` gives the GRU a padding mask; Bidirectional
runs a forward and a backward nlptool GRU.
"""

ids = keras.Input(shape=(None,), dtype="int64")
x = keras.layers.Embedding(vocab_size, 64, mask_zero=True)(ids)
x = keras.layers.Bidirectional(GRU(units, dropout=0.2))(x)
x = keras.layers.Dropout(0.3)(x)
probability = keras.layers.Dense(1, activation="sigmoid")(x)
model = keras.Model(ids, probability)
model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy", metrics=["accuracy"])

"""
## Train and evaluate
"""

start = time.perf_counter()
model.fit(train_ds, epochs=epochs, verbose=2)
print(f"Trained in {time.perf_counter() - start:.0f} s on {os.cpu_count()} CPU cores")
_, dev_accuracy = model.evaluate(dev_ds, verbose=0)
print(f"Dev accuracy: {dev_accuracy:.3f}")

"""
## The same weights in keras.layers.GRU

nlptool's GRU has exactly the variables of `keras.layers.GRU`, so a Keras
model with its weights makes the same predictions.
"""

twin_x = keras.layers.Embedding(vocab_size, 64, mask_zero=True)(ids)
twin_x = keras.layers.Bidirectional(keras.layers.GRU(units))(twin_x)
twin = keras.Model(ids, keras.layers.Dense(1, activation="sigmoid")(twin_x))
twin.set_weights(model.get_weights())
sample_ids = vectorizer(dev_texts[:256])
gap = np.max(np.abs(model.predict(sample_ids, verbose=0) - twin.predict(sample_ids, verbose=0)))
print(f"Largest difference from keras.layers.GRU on 256 dev sentences: {gap:.1e}")
if gap > 1e-4:
    sys.exit("The nlptool GRU and keras.layers.GRU disagree.")

"""
## Predict from raw strings

The vectoriser folded into an end-to-end model, which takes strings.
"""

text_in = keras.Input(shape=(1,), dtype="string")
end_to_end = keras.Model(text_in, model(vectorizer(keras.ops.squeeze(text_in, -1))))
sentences = [
    "a gorgeous, witty and deeply moving film",
    "the plot is thin and the jokes are tired",
    "not bad at all",
]
for sentence, p in zip(sentences, end_to_end.predict(tf.constant(sentences)[:, None], verbose=0)[:, 0]):
    label = "positive" if p >= 0.5 else "negative"
    print(f"{label:8s} {max(p, 1 - p):.2f}  {sentence}")
