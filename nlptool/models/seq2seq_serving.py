"""The serving module of the attention encoder-decoder: source strings in, decoded text out."""

import math

import tensorflow as tf

from nlptool import decoding
from nlptool.export import ServingModule, serving_function
from nlptool.tasks.base import AT_LEAST_ONE
from nlptool.tokenizers import END_ID, PAD_ID, START_ID


class EncoderDecoderServing(ServingModule):
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
    max_length_ratio * (source tokens) + max_length_offset tokens; a source
    is read up to its first max_source_length tokens (decoding_config), so
    that one request's time and memory stay bounded.
    """

    def __init__(self, source_tokenizer, target_tokenizer, model, decoding_config):
        super().__init__(model, name="translation_serving")
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.defaults = decoding_config

    def _encode(self, source, beam_width):
        ids = self.source_tokenizer.cut(source, self.defaults.max_source_length)
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD_ID), tf.int32), axis=1)
        ids = _append_end(ids)  # </s> ends every source, as in training
        memory, keys, mask, state = self.model.encode(ids)
        d = self.defaults
        limits = tf.cast(tf.math.ceil(d.max_length_ratio * tf.cast(lengths, tf.float32)), tf.int32)
        limits += d.max_length_offset
        tiled_memory, tiled_keys, tiled_mask, tiled_ids = (
            decoding.tile_beams(t, beam_width) for t in (memory, keys, mask, ids)
        )

        def step(tokens, state):
            scores, state, _ = self.model.decode_step(
                tokens, state, tiled_memory, tiled_keys, tiled_mask, source=tiled_ids
            )
            return scores, state

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
        flat = tf.reshape(ids, tf.stack([tf.reduce_prod(shape[:-1]), shape[-1]]))  # not -1: 0 rows of 0 columns
        return tf.reshape(self.target_tokenizer.detokenize(flat), shape[:-1])

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def serve(self, source):
        d = self.defaults
        ids, scores, _ = self.translate_ids(source, d.beam_width, 1, d.length_penalty)
        return {"text": self._text(ids[:, 0]), "score": scores[:, 0]}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([], tf.int32, name="beam_width"),
            tf.TensorSpec([], tf.int32, name="n_best"),
            tf.TensorSpec([], tf.float32, name="length_penalty"),
        ]
    )
    def beam_search(self, source, beam_width, n_best, length_penalty):
        bounds = {**type(self.defaults).bounds(), "n_best": AT_LEAST_ONE}
        beam_width, n_best, length_penalty = decoding.checked(
            bounds, beam_width=beam_width, n_best=n_best, length_penalty=length_penalty
        )
        tf.debugging.assert_less_equal(n_best, beam_width, "n_best cannot exceed beam_width")
        ids, scores, lengths = self.translate_ids(source, beam_width, n_best, length_penalty)
        return {"text": self._text(ids), "score": scores, "ids": ids, "lengths": lengths}

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="source")])
    def greedy(self, source):
        ids, scores = self.greedy_ids(source)
        return {"text": self._text(ids), "score": scores}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="source"),
            tf.TensorSpec([None], tf.string, name="target"),
        ]
    )
    def attention(self, source, target):
        """Attention weights of the teacher-forced decoder reading `target`
        (a translation of `source`): weights[b, t, j] is how much target
        token t (the t-th of target_pieces, </s> last) attends to source
        piece j. Pieces are the tokens as text, padded with "". Both are cut
        as decoding cuts them: the source to max_source_length tokens, the
        target to the longest translation of such a source."""
        d = self.defaults
        source_ids = _append_end(self.source_tokenizer.cut(source, d.max_source_length))
        longest = math.ceil(d.max_length_ratio * d.max_source_length) + d.max_length_offset
        target_ids = _append_end(self.target_tokenizer.cut(target, longest))
        target_input = tf.concat([tf.fill([tf.shape(target_ids)[0], 1], START_ID), target_ids[:, :-1]], axis=1)
        target_input = tf.where(tf.equal(target_input, END_ID), PAD_ID, target_input)
        _, weights = self.model((source_ids, target_input))
        return {
            "weights": weights,
            "source_pieces": pieces(self.source_tokenizer, source_ids),
            "target_pieces": pieces(self.target_tokenizer, target_ids),
        }

    @serving_function(input_signature=[])
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
    # a column of its own: ids[:, :1] has none when every text of the batch is empty
    return write_end(tf.concat([ids, tf.zeros(tf.stack([tf.shape(ids)[0], 1]), ids.dtype)], axis=1))


def write_end(ids):
    """Right-padded ids, each row with room after its last token, with </s> written there."""
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD_ID), tf.int32), axis=1)
    return tf.tensor_scatter_nd_update(
        ids, tf.stack([tf.range(tf.shape(ids)[0]), lengths], axis=1), tf.fill(tf.shape(lengths), END_ID)
    )


def pieces(tokenizer, ids):
    """Each id as its own text: (batch, length) strings; </s> as "</s>", padding as ""."""
    flat = tf.reshape(ids, [-1, 1])
    text = tokenizer.detokenize(flat)
    text = tf.where(tf.equal(flat[:, 0], END_ID), "</s>", text)
    return tf.reshape(text, tf.shape(ids))
