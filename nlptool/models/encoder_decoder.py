"""The attention encoder-decoder: RNNsearch (Bahdanau, Cho & Bengio 2014) on nlptool's GRU.

    encoder   h_j = [h_j(forward); h_j(backward)], a bidirectional GRU over
              the embedded source (one or more layers)
    init      s_0 = tanh(W_init [last forward state; last backward state])
    step t    c_t = sum_j alpha_tj h_j, alpha_t = attention(s_{t-1}, h)
              s_t = GRU([E y_{t-1}; c_t], s_{t-1})
              o_t = maxout(W_o [s_t; c_t; E y_{t-1}])          (deep output)
              p(y_t | y_<t, x) = softmax(E_out o_t + b)

The attention query is the previous state s_{t-1}, the context enters the
GRU's input beside the embedding of the previous target token, and the
output layer sees s_t, c_t and that embedding. With `tie_embeddings` the
output matrix E_out is the target embedding itself (Press & Wolf 2017), so
the maxout has the embedding's size.

Training is teacher-forced: the decoder reads <s> y_1 .. y_n and predicts
y_1 .. y_n </s>; padded targets carry no loss; label smoothing spreads
`label_smoothing` of the target mass uniformly over the vocabulary.
`decode_step` runs one step of the same decoder for greedy and beam search
(`nlptool.decoding`) and gives the same numbers as the teacher-forced run.

Hooks for tasks that need more than translation (see docs/design.md):
`initial_decoder_state` and `_recur` let the decoder's state be a
structure (a coverage vector beside s_t), `output_scores` turns each step's
logits into the scores of the output distribution (a copy mechanism mixes
the attention in there), `embedding_ids` maps the ids the embeddings read
(extended vocabulary ids to <unk>), `extra_losses` adds named loss terms
(coverage) weighted by `extra_loss_weights`, and `decode_step` returns the
step's attention weights.
"""

import keras
import tensorflow as tf

from nlptool import distribute
from nlptool.layers import GRU, BahdanauAttention
from nlptool.models.losses import TokenNLL, perplexity, smoothed_nll
from nlptool.tokenizers import PAD_ID, START_ID

_BANNED_SCORE = -1e9  # logit of tokens an output never contains (<pad>, <s>)


@keras.saving.register_keras_serializable(package="nlptool")
class AttentionEncoderDecoder(keras.Model):
    """RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, additive attention, GRU decoder.

    `call((source_ids, target_input_ids), training)` returns teacher-forced
    logits (batch, target_len, target_vocabulary) and attention weights
    (batch, target_len, source_len). `encode` and `decode_step` are the two
    halves for decoding. Padding (id 0) is masked on both sides.

    Trained with `fit` on ((source, target_input), target_output) batches;
    `train_step` and `test_step` report `loss` (label-smoothed), `nll` and
    `perplexity` per target token.
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        embedding_dim=256,
        encoder_units=256,
        encoder_layers=1,
        decoder_units=512,
        attention_units=512,
        dropout=0.0,
        tie_embeddings=True,
        label_smoothing=0.0,
        coverage=False,
        seed=0,
        **kw,
    ):
        super().__init__(**kw)
        self.coverage = coverage
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.embedding_dim = embedding_dim
        self.encoder_units = encoder_units
        self.encoder_layers = encoder_layers
        self.decoder_units = decoder_units
        self.attention_units = attention_units
        self.dropout = dropout
        self.tie_embeddings = tie_embeddings
        self.label_smoothing = label_smoothing
        self.seed = seed

        self.source_embedding = keras.layers.Embedding(source_vocabulary_size, embedding_dim, name="source_embedding")
        self.target_embedding = keras.layers.Embedding(target_vocabulary_size, embedding_dim, name="target_embedding")
        self.encoder = [
            keras.layers.Bidirectional(
                GRU(encoder_units, return_sequences=True, return_state=True, seed=seed + i, name=f"encoder_gru_{i}"),
                name=f"encoder_{i}",
            )
            for i in range(encoder_layers)
        ]
        self.bridge = keras.layers.Dense(decoder_units, activation="tanh", name="bridge")
        self.attention = self.make_attention(attention_units)
        self.decoder_gru = GRU(decoder_units, name="decoder_gru")
        # maxout over pairs of units (Goodfellow et al. 2013), as in Bahdanau et al.'s deep output
        self.deep_output = keras.layers.Dense(2 * embedding_dim, name="deep_output")
        if tie_embeddings:
            self.output_bias = self.add_weight((target_vocabulary_size,), initializer="zeros", name="output_bias")
        else:
            self.softmax = keras.layers.Dense(target_vocabulary_size, name="softmax")
        # [0] source embedding, [1 .. layers-1] between encoder layers, [-2] target embedding, [-1] deep output
        self.dropouts = [keras.layers.Dropout(dropout, seed=seed + 100 + i) for i in range(encoder_layers + 2)]
        self.nll = TokenNLL(name="nll")
        self.smoothed = TokenNLL(name="smoothed_loss")
        self.extra_trackers = {name: keras.metrics.Mean(name=name) for name in self.extra_loss_names}
        if coverage:  # set by training.CoveragePhase: 0 until the coverage phase
            self.coverage_weight = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="coverage_weight"
            )

    def build(self, input_shape=None):
        # the decoder's layers run step by step (also inside decoding loops,
        # where no variable may be created): build them from their shapes first
        memory_dim = 2 * self.encoder_units
        self.attention.build((None, self.decoder_units), (None, None, memory_dim))
        self.decoder_gru.build((None, None, self.embedding_dim + memory_dim))
        self.call((tf.ones((1, 2), tf.int32), tf.ones((1, 2), tf.int32)))  # and the rest

    # --- encoder ---

    def encode(self, source, training=False):
        """Source ids (batch, source_len) -> (memory, keys, mask, s_0): the
        annotations (batch, source_len, 2 * encoder_units), their attention
        keys W_h h_j + b (computed once per sentence), the bool mask of real
        source tokens and the decoder's initial state."""
        mask = tf.not_equal(source, PAD_ID)
        x = self.dropouts[0](self.source_embedding(self.embedding_ids(source)), training=training)
        for i, layer in enumerate(self.encoder):
            if i:
                x = self.dropouts[i](x, training=training)
            x, forward, backward = layer(x, mask=mask, training=training)
        state = self.bridge(tf.concat([forward, backward], axis=-1))
        keys = self.attention.precompute(x)
        return x, keys, mask, self.initial_decoder_state(state, mask)

    # --- decoder ---

    def _recur(self, embedded, state, memory, keys, mask):
        """One decoder recurrence: the embedding of y_{t-1} and the decoder
        state -> (new decoder state, s_t, c_t, attention weights alpha_t).
        The decoder state is s_t itself, or with coverage (s_t, the sum of
        the attention of all steps so far)."""
        if self.coverage:
            state, coverage = state
            context, weights = self.attention(state, memory, keys=keys, mask=mask, coverage=coverage)
            state = self.decoder_gru.step(tf.concat([embedded, context], axis=-1), state)
            return (state, coverage + weights), state, context, weights
        context, weights = self.attention(state, memory, keys=keys, mask=mask)
        state = self.decoder_gru.step(tf.concat([embedded, context], axis=-1), state)
        return state, state, context, weights

    def _logits(self, state, context, embedded, training=False):
        """The deep output layer and the softmax logits; works on (..., features)."""
        t = self.deep_output(tf.concat([state, context, embedded], axis=-1))
        shape = tf.concat([tf.shape(t)[:-1], [self.embedding_dim, 2]], axis=0)
        t = tf.reduce_max(tf.reshape(t, shape), axis=-1)  # maxout over pairs
        t = self.dropouts[-1](t, training=training)
        if self.tie_embeddings:
            return tf.matmul(t, self.target_embedding.embeddings, transpose_b=True) + self.output_bias
        return self.softmax(t)

    # --- hooks ---

    @property
    def extra_loss_names(self):
        """The names `extra_losses` returns, each logged as a metric."""
        return ("coverage_loss",) if self.coverage else ()

    def make_attention(self, units):
        """The attention layer (built in `build`)."""
        return BahdanauAttention(units, coverage=self.coverage, name="attention")

    def initial_decoder_state(self, state, mask):
        """The decoder's state before the first step, from s_0 and the source
        mask: s_0, and with coverage (s_0, zero coverage per source position)."""
        if self.coverage:
            return state, tf.zeros(tf.shape(mask), state.dtype)
        return state

    def embedding_ids(self, ids):
        """The ids the source and target embeddings read for `ids`."""
        return ids

    def extra_loss_weights(self):
        """name -> the weight of that `extra_losses` term in the training loss."""
        weights = {name: 1.0 for name in self.extra_loss_names}
        if self.coverage:
            weights["coverage_loss"] = self.coverage_weight
        return weights

    def output_scores(self, logits, step):
        """The scores of the output distribution (log-space, up to a
        constant per position) from the decoder's logits. `step` holds the
        "state", "context", "embedded" (previous target token), "attention"
        weights and "source" ids of the same positions. Translation uses the
        logits as they are; a copy mechanism returns
        log(p_gen * softmax(logits) + (1 - p_gen) * attention copied onto the source ids)."""
        return logits

    def extra_losses(self, outputs, targets):
        """Named loss terms (scalars per target token) added to the training
        loss. `outputs` holds the teacher-forced "scores", "attention"
        (batch, target_len, source_len) and "source" ids; `targets` the
        target ids (0: padding). Without coverage there are none; with it,
        the coverage loss of See et al. (2017), sum_j min(a_tj, c_tj) with
        c_t = a_1 + ... + a_{t-1}, per real target token."""
        if not self.coverage:
            return {}
        attention = tf.cast(outputs["attention"], tf.float32)
        coverage = tf.cumsum(attention, axis=1, exclusive=True)
        per_token = tf.reduce_sum(tf.minimum(attention, coverage), axis=-1)
        weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
        return {"coverage_loss": tf.reduce_sum(per_token * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)}

    # --- decoding ---

    def decode_step(self, tokens, state, memory, keys, mask, source=None):
        """One decoding step: previous tokens (batch,) and s_{t-1} ->
        (scores (batch, vocabulary), s_t, attention weights (batch, source_len)).
        No dropout; <pad> and <s> are never proposed. `source` (the source ids,
        tiled like `memory`) is for `output_scores` hooks that need it."""
        embedded = self.target_embedding(self.embedding_ids(tokens))
        state, hidden, context, weights = self._recur(embedded, state, memory, keys, mask)
        step = {"state": hidden, "context": context, "embedded": embedded, "attention": weights, "source": source}
        logits = self.output_scores(self._logits(hidden, context, embedded), step)
        # the distribution may be wider than the vocabulary (a copy model's extended ids)
        banned = tf.one_hot([PAD_ID, START_ID], tf.shape(logits)[-1], on_value=True, off_value=False)
        logits = tf.where(tf.reduce_any(banned, axis=0), tf.cast(_BANNED_SCORE, logits.dtype), logits)
        return logits, state, weights

    def decoder_outputs(self, inputs, training=False):
        """The teacher-forced decoder on (source, target_input): a dict of
        "scores" (batch, target_len, vocabulary), "attention" (batch,
        target_len, source_len), and the "state" s_t, "context" c_t,
        "embedded" previous token and "source" ids of every position."""
        source, target_input = inputs
        memory, keys, mask, state = self.encode(source, training=training)
        embedded = self.dropouts[-2](self.target_embedding(self.embedding_ids(target_input)), training=training)
        steps = tf.shape(target_input)[1]
        embedded_tm = tf.transpose(embedded, [1, 0, 2])  # time-major for the loop
        arrays = [tf.TensorArray(embedded.dtype, size=steps) for _ in range(3)]

        def body(t, state, states, contexts, alignments):
            state, hidden, context, weights = self._recur(embedded_tm[t], state, memory, keys, mask)
            return t + 1, state, states.write(t, hidden), contexts.write(t, context), alignments.write(t, weights)

        _, _, states, contexts, alignments = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), state, *arrays)
        )
        states, contexts, alignments = (tf.transpose(a.stack(), [1, 0, 2]) for a in (states, contexts, alignments))
        logits = self._logits(states, contexts, embedded, training=training)
        step = {"state": states, "context": contexts, "embedded": embedded, "attention": alignments, "source": source}
        return {**step, "scores": self.output_scores(logits, step)}

    def call(self, inputs, training=False):
        outputs = self.decoder_outputs(inputs, training=training)
        return outputs["scores"], outputs["attention"]

    # --- fit and evaluate ---

    def _token_losses(self, data, training):
        """(sum of the smoothed loss, sum of the NLL, target tokens, {extra loss: value})."""
        # ((source, target_input), target_output), as the pair pipelines give it; train_on_batch adds a
        # sample weight (None), which the loss has no use for: every real target token weighs the same
        (source, target_input), target_output, _ = keras.utils.unpack_x_y_sample_weight(data)
        scores, attention = self((source, target_input), training=training)
        extras = self.extra_losses({"scores": scores, "attention": attention, "source": source}, target_output)
        return (*smoothed_nll(scores, target_output, self.label_smoothing), extras)

    def _record(self, loss_sum, nll_sum, count, extras):
        """Update the metrics with one batch's sums; returns (the training
        loss: the smoothed loss and the weighted extra losses per target
        token of the global batch, the logs). Under a tf.distribute strategy
        each replica holds part of the batch, and its loss is its share, so
        that the replicas' summed gradients are those of the whole batch."""
        total = tf.maximum(distribute.global_sum(count), 1.0)
        share = count / total  # of the global batch's target tokens
        replicas = tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)
        self.smoothed.update_state(loss_sum, count)
        self.nll.update_state(nll_sum, count)
        loss = loss_sum / total
        weights = self.extra_loss_weights()
        for name, value in extras.items():
            # a per-token mean of this replica's tokens: weighted by its share, the replicas add up to the batch's
            loss += tf.cast(weights[name], value.dtype) * value * share
            self.extra_trackers[name].update_state(value * share * replicas, sample_weight=1.0 / replicas)
        return loss, self.get_metrics_result()

    def get_metrics_result(self):
        logs = {"loss": self.smoothed.result(), "nll": self.nll.result(), "perplexity": perplexity(self.nll.result())}
        return {**logs, **{name: tracker.result() for name, tracker in self.extra_trackers.items()}}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, logs = self._record(*self._token_losses(data, training=True))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return logs

    def test_step(self, data):
        return self._record(*self._token_losses(data, training=False))[1]

    @property
    def metrics(self):
        return [self.smoothed, self.nll, *self.extra_trackers.values()]

    def get_config(self):
        return {
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "encoder_units": self.encoder_units,
            "encoder_layers": self.encoder_layers,
            "decoder_units": self.decoder_units,
            "attention_units": self.attention_units,
            "dropout": self.dropout,
            "tie_embeddings": self.tie_embeddings,
            "label_smoothing": self.label_smoothing,
            "coverage": self.coverage,
            "seed": self.seed,
            "name": self.name,
        }


def build_model(config, source_vocabulary_size, target_vocabulary_size, name="encoder_decoder"):
    m = config.model
    model = AttentionEncoderDecoder(
        source_vocabulary_size,
        target_vocabulary_size,
        embedding_dim=m.embedding_dim,
        encoder_units=m.encoder_units,
        encoder_layers=m.encoder_layers,
        decoder_units=m.decoder_units,
        attention_units=m.attention_units,
        dropout=m.dropout,
        tie_embeddings=m.tie_embeddings,
        label_smoothing=config.training.label_smoothing,
        seed=config.training.seed,
        name=name,
    )
    model.build()
    return model
