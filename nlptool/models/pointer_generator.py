"""The pointer-generator (See, Liu & Manning 2017) on the attention encoder-decoder.

At each decoder step t, with context c_t, decoder state s_t and decoder
input x_t (the embedding of y_{t-1}):

    p_gen  = sigmoid(w_c . c_t + w_s . s_t + w_x . x_t + b)
    P(w)   = p_gen P_vocab(w) + (1 - p_gen) sum_{j : source_j = w} a_tj

P_vocab is the encoder-decoder's softmax and a_t its attention. Everything
is computed in log space: log p_gen and log(1 - p_gen) as log-sigmoids,
log P_vocab as a log-softmax, and the two parts joined by a log-sum-exp that
keeps an empty part at -inf without a NaN in its gradient. So a saturated
p_gen (0 or 1 in float32) and a gold token of zero probability under one
part leave the loss finite.

Ids. The model has one vocabulary of size V for both sides (the copy moves
source ids into the output). Source and target ids may be *extended*: with
a word vocabulary, the words of a text outside the vocabulary take ids V,
V + 1, ... (`extend_ids`); a summary word that copies one of them takes its
id (`extend_target_ids`). The embeddings read every extended id as <unk>,
and the output distribution is as wide as the largest id of the batch's
sources (at least V). With SentencePiece every piece is in the vocabulary,
the ids are plain, and the copy lands on the source pieces' ids.
"""

import keras
import tensorflow as tf

from nlptool.models.encoder_decoder import AttentionEncoderDecoder
from nlptool.tokenizers import UNK_ID

_NEG_INF = float("-inf")


def log_add(a, b):
    """log(exp(a) + exp(b)), element-wise, exact at -inf: -inf where both
    are -inf, with finite gradients everywhere (a plain log-sum-exp of two
    -inf has NaN gradients)."""
    top = tf.stop_gradient(tf.maximum(a, b))
    top = tf.where(tf.math.is_finite(top), top, tf.zeros_like(top))
    total = tf.exp(a - top) + tf.exp(b - top)
    positive = total > 0
    return tf.where(positive, top + tf.math.log(tf.where(positive, total, tf.ones_like(total))), _NEG_INF)


def safe_log(x):
    """log(x) for x >= 0: -inf at 0, with a zero gradient there instead of NaN."""
    positive = x > 0
    return tf.where(positive, tf.math.log(tf.where(positive, x, tf.ones_like(x))), _NEG_INF)


def copy_distribution(attention, source, width):
    """The attention summed onto the ids of the source positions:
    attention (batch, [T,] source_len), source ids (batch, source_len) ->
    (batch, [T,] width), where column w holds the attention of the positions
    whose id is w."""
    attention = tf.convert_to_tensor(attention)
    if attention.shape.rank == 2:
        return copy_distribution(attention[:, None, :], source, width)[:, 0]
    batch, steps, length = tf.shape(attention)[0], tf.shape(attention)[1], tf.shape(attention)[2]
    rows = tf.range(batch)[:, None, None] * steps + tf.range(steps)[None, :, None]  # (batch, T, 1)
    segments = (rows * width + tf.cast(source, tf.int32)[:, None, :]) + tf.zeros([1, 1, length], tf.int32)
    summed = tf.math.unsorted_segment_sum(
        tf.reshape(attention, [-1]), tf.reshape(segments, [-1]), num_segments=batch * steps * width
    )
    return tf.reshape(summed, tf.stack([batch, steps, width]))


# --- extended vocabulary ---


def extend_ids(words, ids, vocabulary_size):
    """Temporary ids for the out-of-vocabulary words of each text.

    words: (batch, length) strings, "" at padding; ids: their ids (<unk> for
    a word outside the vocabulary, 0 at padding). Returns (extended ids,
    oov words): the ids with each out-of-vocabulary word's <unk> replaced by
    V + k, where k numbers the text's distinct such words in order of first
    occurrence (a word that comes back gets its first id), and a
    (batch, K + 1) string tensor whose column k is the word of id V + k
    ("" beyond a text's own words; the extra column keeps K + 1 >= 1)."""
    words = tf.convert_to_tensor(words, tf.string)
    ids = tf.cast(ids, tf.int32)
    oov = tf.equal(ids, UNK_ID) & tf.not_equal(words, "")
    same = tf.equal(words[:, :, None], words[:, None, :]) & oov[:, :, None] & oov[:, None, :]
    length = tf.shape(words)[1]
    before = tf.range(length)[None, :] < tf.range(length)[:, None]  # [i, j]: j < i
    first = oov & tf.logical_not(tf.reduce_any(same & before[None], axis=2))
    rank = tf.cumsum(tf.cast(first, tf.int32), axis=1) - 1
    first_index = tf.argmax(tf.cast(same, tf.int32), axis=2, output_type=tf.int32)  # the first j with the word
    extended = tf.where(oov, vocabulary_size + tf.gather(rank, first_index, batch_dims=1), ids)
    oov_words = tf.ragged.boolean_mask(words, first).to_tensor("")
    oov_words = tf.concat([oov_words, tf.fill(tf.stack([tf.shape(words)[0], 1]), "")], axis=1)
    return extended, oov_words


def extend_target_ids(target_words, target_ids, source_words, source_extended, vocabulary_size):
    """Target ids where each out-of-vocabulary target word that also occurs
    in its source as an out-of-vocabulary word takes that word's extended id;
    others keep their id (<unk> for the rest)."""
    target_ids = tf.cast(target_ids, tf.int32)
    match = (
        tf.equal(target_words[:, :, None], source_words[:, None, :])
        & (source_extended >= vocabulary_size)[:, None, :]
        & tf.equal(target_ids, UNK_ID)[:, :, None]
    )
    copied = tf.gather(source_extended, tf.argmax(tf.cast(match, tf.int32), axis=2, output_type=tf.int32), batch_dims=1)
    return tf.where(tf.reduce_any(match, axis=2), copied, target_ids)


def extended_words(tokenizer, ids, oov_words):
    """The token strings of ids (batch, length) that may be extended:
    the vocabulary's token, or for V + k the word in column k of the row's
    `oov_words`."""
    vocabulary_size = tokenizer.vocabulary_size()
    ids = tf.cast(ids, tf.int32)
    in_vocabulary = tokenizer.tokens(tf.minimum(ids, vocabulary_size - 1))
    slot = tf.clip_by_value(ids - vocabulary_size, 0, tf.shape(oov_words)[1] - 1)
    copied = tf.gather(oov_words, slot, batch_dims=1)
    return tf.where(ids >= vocabulary_size, copied, in_vocabulary)


@keras.saving.register_keras_serializable(package="nlptool")
class PointerGenerator(AttentionEncoderDecoder):
    """The attention encoder-decoder with the copy distribution of See et
    al. (2017), optionally with coverage (the base model's `coverage`).

    One vocabulary of `vocabulary_size` for both sides; ids from
    `vocabulary_size` on are extended ids (see the module docstring). The
    scores it returns are log-probabilities over max(V, largest source id
    + 1) ids. Label smoothing is not supported: it would spread target
    mass onto ids that cannot occur.
    """

    def __init__(self, vocabulary_size, label_smoothing=0.0, **kw):
        if label_smoothing:
            raise ValueError("The pointer-generator does not support label smoothing; set it to 0.")
        kw.pop("source_vocabulary_size", None)
        kw.pop("target_vocabulary_size", None)
        super().__init__(vocabulary_size, vocabulary_size, label_smoothing=0.0, **kw)
        self.vocabulary_size = vocabulary_size
        self.switch = keras.layers.Dense(1, name="copy_switch")  # w_c, w_s, w_x and b of p_gen

    def build(self, input_shape=None):
        memory_dim = 2 * self.encoder_units
        self.switch.build((None, memory_dim + self.decoder_units + self.embedding_dim))
        super().build(input_shape)

    def embedding_ids(self, ids):
        return tf.where(ids >= self.vocabulary_size, UNK_ID, ids)

    def switch_logit(self, step):
        """The logit of p_gen at each position of `step` (see `output_scores`)."""
        features = tf.concat([step["context"], step["state"], step["embedded"]], axis=-1)
        return self.switch(features)[..., 0]

    def generation_probability(self, step):
        """p_gen at each position of `step` (the decoder outputs of those positions)."""
        return tf.sigmoid(self.switch_logit(step))

    def output_scores(self, logits, step):
        logit = tf.cast(self.switch_logit(step), tf.float32)[..., None]
        source = tf.cast(step["source"], tf.int32)
        width = tf.maximum(self.vocabulary_size, tf.reduce_max(source) + 1)
        vocabulary = tf.nn.log_softmax(tf.cast(logits, tf.float32)) + tf.math.log_sigmoid(logit)
        extra = tf.fill(tf.concat([tf.shape(vocabulary)[:-1], [width - self.vocabulary_size]], 0), _NEG_INF)
        vocabulary = tf.concat([vocabulary, extra], axis=-1)
        attention = tf.cast(step["attention"], tf.float32)
        copied = safe_log(copy_distribution(attention, source, width)) + tf.math.log_sigmoid(-logit)
        return log_add(vocabulary, copied)

    def get_config(self):
        config = super().get_config()
        for key in ("source_vocabulary_size", "target_vocabulary_size", "label_smoothing"):
            config.pop(key)
        return {"vocabulary_size": self.vocabulary_size, **config}


def build_model(config, vocabulary_size, name="summarizer"):
    """The summarisation model of `config`: the pointer-generator with
    `model.pointer`, the plain attention encoder-decoder without; coverage
    with `model.coverage` either way."""
    m = config.model
    options = {
        "embedding_dim": m.embedding_dim,
        "encoder_units": m.encoder_units,
        "encoder_layers": m.encoder_layers,
        "decoder_units": m.decoder_units,
        "attention_units": m.attention_units,
        "dropout": m.dropout,
        "tie_embeddings": m.tie_embeddings,
        "coverage": m.coverage,
        "seed": config.training.seed,
        "name": name,
    }
    if m.pointer:
        model = PointerGenerator(vocabulary_size, **options)
    else:
        model = AttentionEncoderDecoder(vocabulary_size, vocabulary_size, label_smoothing=0.0, **options)
    model.build()
    return model


__all__ = [
    "PointerGenerator",
    "build_model",
    "copy_distribution",
    "extend_ids",
    "extend_target_ids",
    "extended_words",
    "log_add",
    "safe_log",
]
