"""The TensorFlow "Neural machine translation with attention" tutorial, as a
user would run it on Multi30k German -> English.

Follows the tutorial's TensorFlow 2 version (tensorflow.org/text/tutorials,
the encoder-decoder with `BahdanauAttention`): a Keras GRU encoder, additive
attention (score = V tanh(W1 query + W2 values)) queried with the decoder's
state, a decoder that feeds [context; embedding] to a Keras GRU one step at a
time and projects to the vocabulary, teacher forcing in a loop over target
positions inside one `tf.function` train step, Adam at its default rate, and
the cross-entropy masked at padding and averaged over positions. As in the
tutorial there is no dropout, no masking of padded source positions in the
attention, and greedy decoding.

What is set to nlptool's shipped `multi30k` config, so that the throughput
ratio compares implementations of the same amount of work: embedding 256,
GRU units 512 (the tutorial's one `units` serves encoder, decoder and
attention: our decoder's and attention's 512), batch 64, the SentencePiece
vocabularies and the 100-piece limit of `multi30k.py`. Batches are padded to
their own longest sentence (the tutorial pads every sentence to the longest
of the corpus, which is slower), and the step loops over positions with
`tf.range`, traced once.

    python benchmarks/peers/keras_nmt.py --seconds 600 [--seed 1] [--limit N]
"""

import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import multi30k
from common import Deadline, command_line

NAME = "TensorFlow NMT-with-attention tutorial"
TASK = "translation"
EMBEDDING_DIM, UNITS, BATCH_SIZE = 256, 512, 64


def build(source_vocab, target_vocab):
    import keras
    import tensorflow as tf

    class Encoder(keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = keras.layers.Embedding(source_vocab, EMBEDDING_DIM)
            self.gru = keras.layers.GRU(
                UNITS, return_sequences=True, return_state=True, recurrent_initializer="glorot_uniform"
            )

        def call(self, source):
            return self.gru(self.embedding(source))  # (outputs, final state)

    class BahdanauAttention(keras.layers.Layer):
        def __init__(self, units):
            super().__init__()
            self.w1, self.w2, self.v = keras.layers.Dense(units), keras.layers.Dense(units), keras.layers.Dense(1)

        def call(self, query, values):
            score = self.v(tf.tanh(self.w1(query[:, None, :]) + self.w2(values)))  # (batch, source, 1)
            weights = tf.nn.softmax(score, axis=1)
            return tf.reduce_sum(weights * values, axis=1), weights

    class Decoder(keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = keras.layers.Embedding(target_vocab, EMBEDDING_DIM)
            self.gru = keras.layers.GRU(
                UNITS, return_sequences=True, return_state=True, recurrent_initializer="glorot_uniform"
            )
            self.fc = keras.layers.Dense(target_vocab)
            self.attention = BahdanauAttention(UNITS)

        def call(self, token, state, encoded):
            context, _ = self.attention(state, encoded)
            inputs = tf.concat([context[:, None, :], self.embedding(token)], axis=-1)  # (batch, 1, units + emb)
            output, state = self.gru(inputs, initial_state=state)
            return self.fc(output[:, 0]), state

    return Encoder(), Decoder()


def train_step_function(encoder, decoder, optimizer):
    import keras
    import tensorflow as tf

    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def masked_loss(gold, logits):
        mask = tf.cast(gold != multi30k.PAD, logits.dtype)
        return tf.reduce_mean(cross_entropy(gold, logits) * mask)

    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def train_step(source, target):
        steps = tf.shape(target)[1] - 1
        with tf.GradientTape() as tape:
            encoded, state = encoder(source)
            loss = tf.constant(0.0)
            for t in tf.range(steps):  # teacher forcing: the gold token of position t predicts t + 1
                logits, state = decoder(target[:, t : t + 1], state, encoded)
                loss += masked_loss(target[:, t + 1], logits)
            loss /= tf.cast(steps, tf.float32)
        variables = encoder.trainable_variables + decoder.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return train_step


def padded(sequences):
    import numpy as np

    out = np.full((len(sequences), max(map(len, sequences))), multi30k.PAD, np.int32)
    for row, ids in enumerate(sequences):
        out[row, : len(ids)] = ids
    return out


def greedy(encoder, decoder, sources, batch_size=128):
    """Predicted ids for each source, a batch at a time, until every row has ended or reached its limit."""
    import numpy as np
    import tensorflow as tf

    predictions = []
    for start in range(0, len(sources), batch_size):
        batch = sources[start : start + batch_size]
        limit = multi30k.max_output_length(max(map(len, batch)))
        encoded, state = encoder(tf.constant(padded(batch)))
        token = tf.fill([len(batch), 1], multi30k.START)
        rows, done = [], np.zeros(len(batch), bool)
        for _ in range(limit):
            logits, state = decoder(token, state, encoded)
            token = tf.argmax(logits, axis=-1, output_type=tf.int32)[:, None]
            rows.append(token.numpy()[:, 0])
            done |= rows[-1] == multi30k.END
            if done.all():
                break
        columns = np.stack(rows, axis=1)
        predictions += [list(columns[i][: multi30k.max_output_length(len(batch[i]))]) for i in range(len(batch))]
    return predictions


def run(seconds, seed, limit=None):
    import keras

    keras.utils.set_random_seed(seed)
    corpus = multi30k.Corpus(limit)
    encoder, decoder = build(*corpus.vocab_sizes)
    optimizer = keras.optimizers.Adam()
    train_step = train_step_function(encoder, decoder, optimizer)
    pairs = list(zip(*corpus.splits["train"]))
    rng = random.Random(seed)
    deadline = Deadline(seconds)  # after tokenisation, as nlptool's budget starts after its tokenisers learn
    epochs, steps, tokens, stopped = 0, 0, 0, False
    batches_per_epoch = -(-len(pairs) // BATCH_SIZE)
    while not stopped:
        rng.shuffle(pairs)
        for done, start in enumerate(range(0, len(pairs), BATCH_SIZE), start=1):
            batch = pairs[start : start + BATCH_SIZE]
            train_step(padded([s for s, _ in batch]), padded([t for _, t in batch]))
            steps += 1
            tokens += sum(multi30k.target_tokens(t) for _, t in batch)
            if deadline.passed():
                stopped = True
                epochs += done / batches_per_epoch
                break
        else:
            epochs += 1
    train_seconds = deadline.elapsed()
    hypotheses = [corpus.decode(ids) for ids in greedy(encoder, decoder, corpus.splits["test"][0])]
    return {
        "train_seconds": round(train_seconds, 1),
        "epochs": round(epochs, 3),
        "train_units": tokens,
        "quality": {"greedy": multi30k.bleu(hypotheses, corpus.references)},
        "config": {"embedding_dim": EMBEDDING_DIM, "units": UNITS, "batch_size": BATCH_SIZE, "steps": steps},
        "samples": [{"source": s, "translation": h} for s, h in zip(corpus.test_sources[:3], hypotheses[:3])],
    }


if __name__ == "__main__":
    command_line(run, __doc__.splitlines()[0])
