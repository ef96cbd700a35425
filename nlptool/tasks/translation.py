"""Translation: config, the attention encoder-decoder, the translation module.

The model is RNNsearch as Bahdanau, Cho & Bengio (2014) describe it, on
nlptool's GRU:

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
"""

import dataclasses
from typing import Literal

import keras
import tensorflow as tf

from nlptool import decoding
from nlptool.layers import GRU, BahdanauAttention
from nlptool.tasks.language_model import TokenNLL
from nlptool.tokenizers import END_ID, PAD_ID, START_ID

_BANNED_SCORE = -1e9  # logit of tokens a translation never contains (<pad>, <s>)


@dataclasses.dataclass
class TokenizerConfig:
    kind: Literal["sentencepiece", "word"] = "sentencepiece"
    vocab_size: int = 8000  # each side (or the shared model), reserved ids included
    shared: bool = False  # one model learnt from both languages instead of one per side
    # word only: split punctuation off and lowercase (word-level BLEU setups lowercase)
    lowercase: bool = False


@dataclasses.dataclass
class ModelConfig:
    embedding_dim: int = 256
    encoder_units: int = 256  # per direction: the annotations h_j have twice this size
    encoder_layers: int = 1
    decoder_units: int = 512
    attention_units: int = 512
    dropout: float = 0.3  # on embeddings, between encoder layers and on the deep output
    tie_embeddings: bool = True  # the softmax reuses the target embedding


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3  # Adam
    clip_norm: float = 1.0  # global gradient norm clipping
    label_smoothing: float = 0.1
    max_length: int = 100  # training pairs whose source + </s> or <s> + target exceeds this many tokens are left out
    max_minutes: float | None = None  # stop after the epoch that passes this wall-clock budget
    seed: int = 1234
    early_stopping_patience: int = 3


@dataclasses.dataclass
class DecodingConfig:
    beam_width: int = 5
    length_penalty: float = 0.6  # alpha of the GNMT penalty ((5 + |Y|) / 6) ** alpha
    # a translation has at most max_length_ratio * source tokens + max_length_offset tokens
    max_length_ratio: float = 1.5
    max_length_offset: int = 10


@dataclasses.dataclass
class TranslationConfig:
    source_lang: str = "de"
    target_lang: str = "en"
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)


# === Loss ===


def smoothed_nll(logits, targets, label_smoothing=0.0):
    """(sum of the training loss, sum of the plain negative log-likelihood,
    number of targets) over the non-padding targets of a batch.

    The loss per token is (1 - eps) * -log p(y) + eps * mean_v(-log p(v)),
    cross-entropy against the target smoothed uniformly over the vocabulary
    (Szegedy et al. 2016); eps = 0 gives the plain negative log-likelihood.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
    nll = -tf.gather(log_probs, targets, batch_dims=2)
    weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    loss = nll
    if label_smoothing:
        loss = (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, axis=-1)
    return tf.reduce_sum(loss * weights), tf.reduce_sum(nll * weights), tf.reduce_sum(weights)


# === Model ===


@keras.saving.register_keras_serializable(package="nlptool")
class RNNSearch(keras.Model):
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
        seed=0,
        **kw,
    ):
        super().__init__(**kw)
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
        self.attention = BahdanauAttention(attention_units, name="attention")
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
        x = self.dropouts[0](self.source_embedding(source), training=training)
        for i, layer in enumerate(self.encoder):
            if i:
                x = self.dropouts[i](x, training=training)
            x, forward, backward = layer(x, mask=mask, training=training)
        state = self.bridge(tf.concat([forward, backward], axis=-1))
        keys = self.attention.precompute(x)
        return x, keys, mask, state

    # --- decoder ---

    def _recur(self, embedded, state, memory, keys, mask):
        """One decoder recurrence: the embedding of y_{t-1} and s_{t-1} ->
        (s_t, c_t, attention weights alpha_t)."""
        context, weights = self.attention(state, memory, keys=keys, mask=mask)
        state = self.decoder_gru.step(tf.concat([embedded, context], axis=-1), state)
        return state, context, weights

    def _logits(self, state, context, embedded, training=False):
        """The deep output layer and the softmax logits; works on (..., features)."""
        t = self.deep_output(tf.concat([state, context, embedded], axis=-1))
        shape = tf.concat([tf.shape(t)[:-1], [self.embedding_dim, 2]], axis=0)
        t = tf.reduce_max(tf.reshape(t, shape), axis=-1)  # maxout over pairs
        t = self.dropouts[-1](t, training=training)
        if self.tie_embeddings:
            return tf.matmul(t, self.target_embedding.embeddings, transpose_b=True) + self.output_bias
        return self.softmax(t)

    def decode_step(self, tokens, state, memory, keys, mask):
        """One decoding step: previous tokens (batch,) and s_{t-1} ->
        (logits (batch, vocabulary), s_t, attention weights (batch, source_len)).
        No dropout; <pad> and <s> are never proposed."""
        embedded = self.target_embedding(tokens)
        state, context, weights = self._recur(embedded, state, memory, keys, mask)
        logits = self._logits(state, context, embedded)
        banned = tf.one_hot([PAD_ID, START_ID], self.target_vocabulary_size, on_value=True, off_value=False)
        logits = tf.where(tf.reduce_any(banned, axis=0), tf.cast(_BANNED_SCORE, logits.dtype), logits)
        return logits, state, weights

    def call(self, inputs, training=False):
        source, target_input = inputs
        memory, keys, mask, state = self.encode(source, training=training)
        embedded = self.dropouts[-2](self.target_embedding(target_input), training=training)
        steps = tf.shape(target_input)[1]
        embedded_tm = tf.transpose(embedded, [1, 0, 2])  # time-major for the loop
        arrays = [tf.TensorArray(embedded.dtype, size=steps) for _ in range(3)]

        def body(t, state, states, contexts, alignments):
            state, context, weights = self._recur(embedded_tm[t], state, memory, keys, mask)
            return t + 1, state, states.write(t, state), contexts.write(t, context), alignments.write(t, weights)

        _, _, states, contexts, alignments = tf.while_loop(
            lambda t, *_: t < steps, body, (tf.constant(0), state, *arrays)
        )
        states, contexts, alignments = (tf.transpose(a.stack(), [1, 0, 2]) for a in (states, contexts, alignments))
        return self._logits(states, contexts, embedded, training=training), alignments

    # --- fit and evaluate ---

    def _token_losses(self, data, training):
        (source, target_input), target_output = data
        logits, _ = self((source, target_input), training=training)
        return smoothed_nll(logits, target_output, self.label_smoothing)

    def _record(self, loss_sum, nll_sum, count):
        self.smoothed.update_state(loss_sum, count)
        self.nll.update_state(nll_sum, count)
        return {"loss": self.smoothed.result(), "nll": self.nll.result(), "perplexity": tf.exp(self.nll.result())}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss_sum, nll_sum, count = self._token_losses(data, training=True)
            loss = loss_sum / tf.maximum(count, 1.0)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._record(loss_sum, nll_sum, count)

    def test_step(self, data):
        return self._record(*self._token_losses(data, training=False))

    @property
    def metrics(self):
        return [self.smoothed, self.nll]

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
            "seed": self.seed,
            "name": self.name,
        }


def build_model(config, source_vocabulary_size, target_vocabulary_size):
    m = config.model
    model = RNNSearch(
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
        name="translator",
    )
    model.build()
    return model


# === Translation module (exported) ===


class TranslationServing(tf.Module):
    """Source strings in, translations out: both tokenisers, the model and
    the decoding loop in one graph.

    Signatures (all batched over sentences):
        serve(source)                                   -> text, score (beam search, the run's settings)
        beam_search(source, beam_width, n_best, length_penalty)
                                                        -> text [B, n_best], score [B, n_best], ids, lengths
        greedy(source)                                  -> text, score
        attention(source, target)                       -> weights [B, T, S], source_pieces, target_pieces
        decoding_defaults()                             -> beam_width, length_penalty, ...

    `score` is the GNMT-normalised log-probability of the hypothesis (plain
    log-probability for greedy). A translation ends at </s> or after
    max_length_ratio * (source tokens) + max_length_offset tokens.
    """

    def __init__(self, source_tokenizer, target_tokenizer, model, decoding_config):
        super().__init__(name="translation_serving")
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.model = model
        self.defaults = decoding_config

    def _encode(self, source, beam_width):
        ids = self.source_tokenizer(source)
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD_ID), tf.int32), axis=1)
        memory, keys, mask, state = self.model.encode(_append_end(ids))  # </s> ends every source, as in training
        d = self.defaults
        limits = tf.cast(tf.math.ceil(d.max_length_ratio * tf.cast(lengths, tf.float32)), tf.int32)
        limits += d.max_length_offset
        tiled = [decoding.tile_beams(t, beam_width) for t in (memory, keys, mask)]

        def step(tokens, state):
            logits, state, _ = self.model.decode_step(tokens, state, *tiled)
            return logits, state

        return step, state, limits

    def translate_ids(self, source, beam_width, n_best, length_penalty):
        """(ids [B, n_best, T], scores [B, n_best], lengths [B, n_best])."""
        step, state, limits = self._encode(source, beam_width)
        start = tf.fill(tf.shape(limits), START_ID)
        return decoding.beam_search(
            step, state, start, beam_width, limits, end_id=END_ID, length_penalty=length_penalty, n_best=n_best
        )

    def greedy_ids(self, source):
        """(ids [B, T], log-probabilities [B]) of greedy decoding."""
        step, state, limits = self._encode(source, 1)
        start = tf.fill(tf.shape(limits), START_ID)
        # greedy as the beam search of width 1: the same tokens (a tested
        # identity), with the hypothesis's log-probability as its score
        ids, scores, _ = decoding.beam_search(step, state, start, 1, limits, end_id=END_ID)
        return ids[:, 0], scores[:, 0]

    def _text(self, ids):
        shape = tf.shape(ids)
        flat = tf.reshape(ids, tf.stack([-1, shape[-1]]))
        return tf.reshape(self.target_tokenizer.detokenize(flat), shape[:-1])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def serve(self, source):
        d = self.defaults
        ids, scores, _ = self.translate_ids(source, d.beam_width, 1, d.length_penalty)
        return {"text": self._text(ids[:, 0]), "score": scores[:, 0]}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([], tf.int32, name="beam_width"),
            tf.TensorSpec([], tf.int32, name="n_best"),
            tf.TensorSpec([], tf.float32, name="length_penalty"),
        ]
    )
    def beam_search(self, source, beam_width, n_best, length_penalty):
        tf.debugging.assert_positive(beam_width, "beam_width must be at least 1")
        tf.debugging.assert_positive(n_best, "n_best must be at least 1")
        tf.debugging.assert_less_equal(n_best, beam_width, "n_best cannot exceed beam_width")
        ids, scores, lengths = self.translate_ids(source, beam_width, n_best, length_penalty)
        return {"text": self._text(ids), "score": scores, "ids": ids, "lengths": lengths}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def greedy(self, source):
        ids, scores = self.greedy_ids(source)
        return {"text": self._text(ids), "score": scores}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([None], tf.string, name="target"),
        ]
    )
    def attention(self, source, target):
        """Attention weights of the teacher-forced decoder reading `target`
        (a translation of `source`): weights[b, t, j] is how much target
        token t (the t-th of target_pieces, </s> last) attends to source
        piece j. Pieces are the tokens as text, padded with ""."""
        source_ids = self.source_tokenizer(source)
        source_ids = _append_end(source_ids)
        target_ids = _append_end(self.target_tokenizer(target))
        target_input = tf.concat([tf.fill([tf.shape(target_ids)[0], 1], START_ID), target_ids[:, :-1]], axis=1)
        target_input = tf.where(tf.equal(target_input, END_ID), PAD_ID, target_input)
        _, weights = self.model((source_ids, target_input))
        return {
            "weights": weights,
            "source_pieces": _pieces(self.source_tokenizer, source_ids),
            "target_pieces": _pieces(self.target_tokenizer, target_ids),
        }

    @tf.function(input_signature=[])
    def decoding_defaults(self):
        d = self.defaults
        return {
            "beam_width": tf.constant(d.beam_width, tf.int32),
            "length_penalty": tf.constant(d.length_penalty, tf.float32),
            "max_length_ratio": tf.constant(d.max_length_ratio, tf.float32),
            "max_length_offset": tf.constant(d.max_length_offset, tf.int32),
        }


def _append_end(ids):
    """Right-padded ids with </s> written after each row's last token (one column longer)."""
    ids = tf.concat([ids, tf.zeros_like(ids[:, :1])], axis=1)
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD_ID), tf.int32), axis=1)
    return tf.tensor_scatter_nd_update(
        ids, tf.stack([tf.range(tf.shape(ids)[0]), lengths], axis=1), tf.fill(tf.shape(lengths), END_ID)
    )


def _pieces(tokenizer, ids):
    """Each id as its own text: (batch, length) strings; </s> as "</s>", padding as ""."""
    flat = tf.reshape(ids, [-1, 1])
    text = tokenizer.detokenize(flat)
    text = tf.where(tf.equal(flat[:, 0], END_ID), "</s>", text)
    return tf.reshape(text, tf.shape(ids))
