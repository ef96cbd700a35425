"""The GRU language model, and the corpus as token streams for truncated BPTT.

Model: token ids -> Embedding -> stacked nlptool GRU -> (projection to the
embedding size) -> softmax over the vocabulary, whose weights are the
embedding matrix itself when `tie_weights` is on (Press & Wolf 2017; Inan
et al. 2017). Dropout is variational, as Gal & Ghahramani (2016) found best
for recurrent language models: one mask per sequence, on the input of every
GRU layer and on the output of the last.

Training reads a corpus as one long token stream, cut into `batch_size`
parallel columns that are read window by window (truncated backpropagation
through time, Zaremba et al. 2014): the final GRU states of one window are
the initial states of the next, without gradient, and are reset to zero at
the start of the stream.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from nlptool import compat, distribute
from nlptool.layers import GRU
from nlptool.models.losses import TokenNLL, perplexity, token_nll
from nlptool.tokenizers import END_ID, PAD_ID

CHUNK_CHARACTERS = 10_000  # "text" unit corpora are tokenised in pieces of whole lines of about this size
TOKENIZE_BATCH = 2048


# === Token streams ===


def training_texts(lines, unit):
    """What the tokeniser learns from: the lines, or the text in pieces."""
    return lines if unit == "line" else _pieces(lines)


def _pieces(lines):
    """The text (every line followed by its newline) in pieces of whole lines
    of about CHUNK_CHARACTERS, so that no piece boundary splits a word."""
    pieces, piece, size = [], [], 0
    for line in lines:
        piece.append(line + "\n")
        size += len(line) + 1
        if size >= CHUNK_CHARACTERS:
            pieces.append("".join(piece))
            piece, size = [], 0
    if piece:
        pieces.append("".join(piece))
    return pieces


def token_stream(tokenizer, lines, unit, direction="forward"):
    """The corpus as one int32 id stream. "line": every line's tokens then
    </s>, with one </s> in front so that the first word is predicted too (the
    PTB convention: every word and every end of sentence counts). "text":
    the text's tokens, newlines included, after one </s>.

    "backward": that stream reversed, so that every line's tokens come last
    to first, each line after a </s> (what a backward model reads: the
    token before, from all that follows it)."""
    texts = lines if unit == "line" else _pieces(lines)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(batch):
        ids = tokenizer(batch)
        if unit == "line":
            ids = tf.concat([ids, tf.fill([tf.shape(ids)[0], 1], PAD_ID)], axis=1)
            # </s> right after each line's last token
            lengths = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1)
            ids = tf.tensor_scatter_nd_update(
                ids, tf.stack([tf.range(tf.shape(ids)[0]), lengths], axis=1), tf.fill(tf.shape(lengths), END_ID)
            )
        return tf.boolean_mask(ids, ids != PAD_ID)  # row by row, in order

    parts = [np.array([END_ID], np.int32)]
    for start in range(0, len(texts), TOKENIZE_BATCH):
        parts.append(encode(tf.constant(texts[start : start + TOKENIZE_BATCH])).numpy())
    stream = np.concatenate(parts)
    if direction == "backward":
        return np.ascontiguousarray(stream[::-1])
    if direction != "forward":
        raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}.")
    return stream


def stream_windows(stream, batch_size):
    """The stream (a 1-D array of ids) laid out as `batch_size` contiguous
    columns for truncated BPTT: (inputs, targets), each (batch_size, rows),
    where targets are the inputs shifted by one token. The tail is padded
    with <pad>, and padded targets carry no loss, so every token of the
    stream but the first (context only) is predicted exactly once.
    """
    stream = np.asarray(stream, np.int32)
    if stream.ndim != 1 or len(stream) < 2:
        raise ValueError(f"A token stream needs at least 2 tokens, got shape {stream.shape}.")
    inputs, targets = stream[:-1], stream[1:]
    rows = -(-len(inputs) // batch_size)
    pad = rows * batch_size - len(inputs)
    inputs = np.concatenate([inputs, np.full(pad, PAD_ID, np.int32)]).reshape(batch_size, rows)
    targets = np.concatenate([targets, np.full(pad, PAD_ID, np.int32)]).reshape(batch_size, rows)
    return inputs, targets


def window_dataset(stream, batch_size, window):
    """A tf.data.Dataset of ((ids, reset), targets) windows over `stream`, in
    order (see `stream_windows`); ids and targets are (batch_size, <= window)."""
    inputs, targets = stream_windows(stream, batch_size)
    starts = list(range(0, inputs.shape[1], window))

    def generate():
        for start in starts:
            yield (inputs[:, start : start + window], np.bool_(start == 0)), targets[:, start : start + window]

    spec = tf.TensorSpec((batch_size, None), tf.int32)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=((spec, tf.TensorSpec((), tf.bool)), spec))
    return dataset.apply(tf.data.experimental.assert_cardinality(len(starts))).prefetch(tf.data.AUTOTUNE)


# === Model ===


@keras.saving.register_keras_serializable(package="nlptool")
class LanguageModel(keras.Model):
    """Embedding -> stacked GRU -> (projection) -> (tied) softmax.

    `call(ids, states=None, training=False)` returns (logits, states): logits
    (batch, time, vocabulary) and the final state of every layer. Padding
    (id 0) is masked: the state carries over padded steps.

    Trained with `fit` on `window_dataset` elements: `train_step` and
    `test_step` carry the states from window to window in variables (see
    `carry_states`), so each window starts where the last one ended.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        units,
        layers,
        dropout=0.0,
        tie_weights=True,
        softmax_samples=0,
        seed=0,
        **kw,
    ):
        super().__init__(**kw)
        if not 0 <= softmax_samples < vocabulary_size:
            raise ValueError(
                f"softmax_samples must be 0 (full softmax) or below the vocabulary size "
                f"{vocabulary_size}, got {softmax_samples}."
            )
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.num_layers = layers
        self.dropout = dropout
        self.tie_weights = tie_weights
        self.softmax_samples = softmax_samples
        self.seed = seed
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.grus = [
            GRU(units, return_sequences=True, return_state=True, dropout=dropout, seed=seed + i, name=f"gru_{i}")
            for i in range(layers)
        ]
        self.output_seed = keras.random.SeedGenerator(seed + layers, name="output_dropout_seed")
        self.sampler_seed = keras.random.SeedGenerator(seed + layers + 1, name="softmax_sampler_seed")
        if tie_weights:
            self.projection = keras.layers.Dense(embedding_dim, name="projection") if units != embedding_dim else None
            self.output_bias = self.add_weight((vocabulary_size,), initializer="zeros", name="output_bias")
        else:
            self.projection = keras.layers.Dense(vocabulary_size, name="softmax")
        self.nll = TokenNLL()
        self._carried = None

    # --- the network ---

    def build(self, ids_shape=None):
        ids = tf.zeros((1, 1), tf.int32)
        self.call(ids)  # creates every weight

    def call(self, ids, states=None, training=False):
        outputs, states = self.encode(ids, states=states, training=training)
        return self.logits(outputs, training=training), states

    def encode(self, ids, states=None, training=False):
        """(GRU outputs (batch, time, units), final states of every layer)."""
        mask = tf.not_equal(ids, PAD_ID)
        x = self.embedding(ids)
        if states is None:
            states = [None] * self.num_layers
        new_states = []
        for gru, state in zip(self.grus, states):
            x, state = gru(x, initial_state=state, mask=mask, training=training)
            new_states.append(state)
        return x, new_states

    def features(self, outputs, training=False):
        """(..., units) GRU outputs -> the (..., d) vectors that the softmax
        weights score: output dropout in training, then the projection to
        the embedding size when the weights are tied."""
        if training and self.dropout:
            # one mask per sequence, shared over time
            keep = keras.random.dropout(tf.ones_like(outputs[:, :1, :]), self.dropout, seed=self.output_seed)
            outputs = outputs * keep
        if self.tie_weights and self.projection is not None:
            outputs = self.projection(outputs)
        return outputs

    def logits(self, outputs, training=False):
        """(..., units) GRU outputs -> (..., vocabulary) logits."""
        features = self.features(outputs, training=training)
        if self.tie_weights:
            return tf.matmul(features, self.embedding.embeddings, transpose_b=True) + self.output_bias
        return self.projection(features)

    def softmax_weights(self):
        """(weights (vocabulary, d), bias (vocabulary,)) of the output
        softmax, in the layout that tf.nn.sampled_softmax_loss takes."""
        if self.tie_weights:
            return self.embedding.embeddings, self.output_bias
        return tf.transpose(self.projection.kernel), self.projection.bias

    def log_uniform_samples(self, targets):
        """`softmax_samples` word ids drawn with replacement from the
        log-uniform distribution P(k) = log((k + 2) / (k + 1)) / log(V + 1)
        (most likely for the low, frequent ids), and the expected number of
        draws of each target and of each sample: the `sampled_values` of
        tf.nn.sampled_softmax_loss. The draws come from the model's seed
        generator, so a resumed run draws what the uninterrupted one did."""
        log_range = math.log(self.vocabulary_size + 1)
        uniform = keras.random.uniform((self.softmax_samples,), seed=self.sampler_seed, dtype="float64")
        sampled = tf.cast(tf.floor(tf.exp(uniform * log_range)) - 1, tf.int64)
        sampled = tf.clip_by_value(sampled, 0, self.vocabulary_size - 1)

        def expected_count(ids):
            ids = tf.cast(ids, tf.float64)
            probability = (tf.math.log(ids + 2.0) - tf.math.log(ids + 1.0)) / log_range
            return tf.cast(self.softmax_samples * probability, tf.float32)

        return sampled, expected_count(targets), expected_count(sampled)

    def sampled_nll(self, outputs, targets):
        """(sum of sampled-softmax losses, number of targets) of a training
        batch: each target is scored against `softmax_samples` draws from the
        log-uniform distribution (shared by the batch; see
        `log_uniform_samples`), with the expected-count correction, so that
        the gradient approximates the full softmax's. A target drawn among
        the samples does not count against itself. <pad> targets count for
        nothing."""
        features = self.features(outputs, training=True)
        weights, bias = self.softmax_weights()
        labels = tf.reshape(tf.cast(targets, tf.int64), [-1, 1])
        losses = tf.nn.sampled_softmax_loss(
            weights,
            bias,
            labels=labels,
            inputs=tf.reshape(tf.cast(features, weights.dtype), [-1, weights.shape[-1]]),
            num_sampled=self.softmax_samples,
            num_classes=self.vocabulary_size,
            sampled_values=self.log_uniform_samples(labels),
            remove_accidental_hits=True,
        )
        mask = tf.reshape(tf.cast(tf.not_equal(targets, PAD_ID), tf.float32), [-1])
        return tf.reduce_sum(losses * mask), tf.reduce_sum(mask)

    def step(self, tokens, states):
        """One generation step: tokens (batch,) and the layers' states ->
        (logits (batch, vocabulary), new states). No dropout."""
        x = self.embedding(tokens)
        new_states = []
        for gru, state in zip(self.grus, states):
            x = gru.step(x, state)
            new_states.append(x)
        return self.logits(x[:, None, :])[:, 0, :], new_states

    def initial_states(self, batch_size):
        return [tf.zeros((batch_size, self.units)) for _ in self.grus]

    # --- fit and evaluate over windows ---

    @compat.no_automatic_tracking()
    def carry_states(self, batch_size):
        """Create the variables that carry the GRU states between windows of
        `batch_size` columns (not weights: never saved). Call before `fit`
        or `evaluate` with `window_dataset` batches of that size.

        Under a tf.distribute strategy (call it in the strategy's scope) each
        replica carries the states of its own columns, batch_size / replicas
        of them (see `nlptool.distribute.replica_rows`)."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(
                f"A language model's batch of {batch_size} columns cannot be split evenly over {replicas} replicas: "
                f"choose a training.batch_size that {replicas} divides."
            )
        self._carried = [
            tf.Variable(
                tf.zeros((batch_size // replicas, self.units)),
                trainable=False,
                name=f"carried_state_{i}",
                # one copy per replica, each written and read by its own replica only
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for i in range(self.num_layers)
        ]

    def _window(self, data):
        (ids, reset), targets = data
        if self._carried is None:
            raise RuntimeError("Call `carry_states(batch_size)` before training or evaluating on windows.")
        states = [tf.where(reset, tf.zeros_like(v), v) for v in self._carried]
        return ids, targets, states

    def _record(self, nll_sum, count, states):
        for variable, state in zip(self._carried, states):
            variable.assign(tf.stop_gradient(state))
        self.nll.update_state(nll_sum, count)
        return self.get_metrics_result()

    def get_metrics_result(self):
        mean = self.nll.result()
        return {"loss": mean, "perplexity": perplexity(mean)}

    def train_step(self, data):
        ids, targets, states = self._window(data)
        with tf.GradientTape() as tape:
            outputs, new_states = self.encode(ids, states=states, training=True)
            if self.softmax_samples:
                nll_sum, count = self.sampled_nll(outputs, targets)
            else:
                nll_sum, count = token_nll(self.logits(outputs, training=True), targets)
            loss = nll_sum / tf.maximum(distribute.global_sum(count), 1.0)  # of the global batch's tokens
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        logs = self._record(nll_sum, count, new_states)
        if self.softmax_samples:
            del logs["perplexity"]  # of the sampled softmax: not a perplexity of the model
        return logs

    def test_step(self, data):
        ids, targets, states = self._window(data)
        logits, new_states = self(ids, states=states, training=False)
        nll_sum, count = token_nll(logits, targets)
        return self._record(nll_sum, count, new_states)

    @property
    def metrics(self):
        return [self.nll]

    def get_config(self):
        return {
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "layers": self.num_layers,
            "dropout": self.dropout,
            "tie_weights": self.tie_weights,
            "softmax_samples": self.softmax_samples,
            "seed": self.seed,
            "name": self.name,
        }


def build_model(config, vocabulary_size):
    m = config.model
    model = LanguageModel(
        vocabulary_size,
        m.embedding_dim,
        m.units,
        m.layers,
        dropout=m.dropout,
        tie_weights=m.tie_weights,
        softmax_samples=config.training.softmax_samples,
        seed=config.training.seed,
        name="language_model",
    )
    model.build()
    if not m.train_embedding:
        model.embedding.trainable = False
    return model


def copy_weights(source, target):
    """Give `target` the weights of `source`, a language model of the same
    embedding and GRU layers; the sampler and dropout seeds stay the target's.

    The softmax follows the target's own tying: tied to tied copies the
    projection and output bias; a target with a softmax of its own starts
    from the source's, or from what the tied source computes (the embedding
    transposed, through its projection if it has one).
    """
    pairs = [("embedding", source.embedding, target.embedding)]
    pairs += [(gru.name, gru, into) for gru, into in zip(source.grus, target.grus, strict=True)]
    if target.tie_weights:
        if not source.tie_weights:
            raise ValueError(
                "The language model ties its softmax to the embedding, the one it starts from has a softmax of its own."
            )
        if source.projection is not None or target.projection is not None:
            pairs.append(("projection", source.projection, target.projection))
    for name, layer, into in pairs:
        weights = None if layer is None else layer.get_weights()
        if into is None or weights is None or [w.shape for w in weights] != [w.shape for w in into.get_weights()]:
            raise ValueError(f"The language model's {name} does not match the one it starts from.")
        into.set_weights(weights)
    if target.tie_weights:
        target.output_bias.assign(source.output_bias)
        return
    if not source.tie_weights:
        kernel, bias = source.projection.get_weights()
    else:  # logits = (h P + p) E^T + b = h (P E^T) + (p E^T + b)
        embedding, bias = source.embedding.get_weights()[0], source.output_bias.numpy()
        kernel = embedding.T
        if source.projection is not None:
            projection, projection_bias = source.projection.get_weights()
            kernel, bias = projection @ embedding.T, projection_bias @ embedding.T + bias
    target.projection.set_weights([kernel, bias])


def stream_nll(model, stream, batch_size=1, window=200, progress=False):
    """(sum of negative log-likelihoods in nats, tokens predicted) of `stream`
    under `model`, carrying state across windows: every token after the first
    is predicted from all of the tokens before it in its column (with the
    default single column, from everything before it in the stream). With
    `progress`, a progress line on a terminal counts the tokens scored."""
    from nlptool.progress import Progress

    inputs, targets = stream_windows(stream, batch_size)
    bar = Progress(inputs.size, "tokens scored") if progress else None

    @tf.function(reduce_retracing=True)
    def run(ids, targets, states):
        logits, states = model(ids, states=states, training=False)
        return (*token_nll(logits, targets), states)

    states = model.initial_states(batch_size)
    total, count = 0.0, 0.0
    for start in range(0, inputs.shape[1], window):
        nll, n, states = run(inputs[:, start : start + window], targets[:, start : start + window], states)
        total += float(nll)
        count += float(n)
        if bar is not None:
            bar.update(min(inputs.size, (start + window) * batch_size))
    return total, count
