"""The serving module of summarisation: texts in, summaries out, decoded in the graph."""

import tensorflow as tf

from nlptool import decoding
from nlptool.export import ServingModule, serving_function
from nlptool.models import pointer_generator
from nlptool.models.seq2seq_serving import pieces, write_end
from nlptool.tasks.base import AT_LEAST_ONE
from nlptool.tokenizers import END_ID, PAD_ID, START_ID

TRIGRAM = 3


class SummarizationServing(ServingModule):
    """Texts in, summaries out: the tokeniser, the model (pointer-generator
    or plain attention encoder-decoder) and beam search in one graph.

    Signatures (batched over texts):
        serve(text)                                -> summary, score (beam search, the run's settings)
        beam_search(text, beam_width, n_best, length_penalty, coverage_penalty,
                    min_length, max_length, block_trigrams)
                                                   -> summary [B, n_best], score [B, n_best], ids, lengths
        greedy(text)                               -> summary, score
        attention(text, summary)                   -> weights [B, T, S], p_gen [B, T], text_pieces, summary_pieces
        decoding_defaults()                        -> the run's values of the beam_search options

    `score` is log P / lp + cp: the GNMT length penalty lp and coverage
    penalty cp (Wu et al. 2016; plain log-probability for greedy, which
    keeps the length limits and trigram blocking). Texts are cut to their
    first `max_source_length` tokens, as in training. With a word
    vocabulary and the copy distribution, out-of-vocabulary words of a text
    can be copied, and are written as they are in the text.
    """

    def __init__(self, tokenizer, model, decoding_config, max_source_length):
        super().__init__(model, name="summarization_serving")
        self.tokenizer = tokenizer
        self.defaults = decoding_config
        self.max_source_length = max_source_length
        self.pointer = isinstance(model, pointer_generator.PointerGenerator)
        # the temporary ids of out-of-vocabulary words need the words: a word vocabulary
        self.copies_words = self.pointer and hasattr(tokenizer, "split")

    # --- ids ---

    def source_ids(self, text):
        """(ids [B, S] ending in </s>, the words of the extended ids [B, K])."""
        batch = tf.shape(text)[0]
        ids = self.tokenizer.tokenize(text)[:, : self.max_source_length]
        # one column more than the longest text: room for </s>, also when every text is empty
        ids = tf.concat([ids.to_tensor(PAD_ID), tf.zeros(tf.stack([batch, 1]), tf.int32)], axis=1)
        if not self.copies_words:
            return write_end(ids), tf.fill(tf.stack([batch, 1]), "")
        words = self.tokenizer.split(text)[:, : self.max_source_length].to_tensor("")
        words = tf.concat([words, tf.fill(tf.stack([batch, 1]), "")], axis=1)
        extended, oov_words = pointer_generator.extend_ids(words, ids, self.tokenizer.vocabulary_size())
        return write_end(extended), oov_words

    def _summary_ids(self, summary, source, oov_words):
        """Teacher-forcing ids of `summary` for the sources: (target_input, target ids ending in </s>)."""
        batch, longest = tf.shape(summary)[0], self.defaults.max_length  # the longest summary decoding writes
        ids = self.tokenizer.tokenize(summary)[:, :longest]
        ids = tf.concat([ids.to_tensor(PAD_ID), tf.zeros([batch, 1], tf.int32)], 1)
        if self.copies_words:
            words = tf.concat([self.tokenizer.split(summary)[:, :longest].to_tensor(""), tf.fill([batch, 1], "")], 1)
            source_words = pointer_generator.extended_words(self.tokenizer, source, oov_words)
            ids = pointer_generator.extend_target_ids(
                words, ids, source_words, source, self.tokenizer.vocabulary_size()
            )
        target = write_end(ids)
        target_input = tf.concat([tf.fill([batch, 1], START_ID), target[:, :-1]], axis=1)
        return tf.where(tf.equal(target_input, END_ID), PAD_ID, target_input), target

    def _words(self, ids, oov_words):
        """The token strings of (batch, length) ids, extended ones as their words."""
        if self.copies_words:
            return pointer_generator.extended_words(self.tokenizer, ids, oov_words)
        return pieces(self.tokenizer, ids)

    def _text(self, ids, oov_words):
        """Summaries of ids [B, ..., T] (extended ids written as their source words)."""
        shape = tf.shape(ids)
        rows = tf.reduce_prod(shape[:-1])  # not -1 in the reshape: an empty batch has no size to infer
        flat = tf.reshape(ids, tf.stack([rows, shape[-1]]))
        if not self.copies_words:
            return tf.reshape(self.tokenizer.detokenize(flat), shape[:-1])
        per_row = rows // tf.maximum(shape[0], 1)  # n_best rows per text
        words = self._words(flat, tf.repeat(oov_words, per_row, axis=0))
        before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(flat, END_ID), tf.int32), axis=1), 0)
        keep = before_end & tf.not_equal(flat, PAD_ID) & tf.not_equal(flat, START_ID)
        text = tf.strings.reduce_join(tf.ragged.boolean_mask(words, keep), axis=1, separator=" ")
        return tf.reshape(text, shape[:-1])

    # --- decoding ---

    def decode_ids(self, text, beam_width, n_best, length_penalty, coverage_penalty, min_length, max_length, block):
        """(ids [B, n_best, T], scores [B, n_best], lengths [B, n_best], oov words [B, K])."""
        ids, oov_words = self.source_ids(text)
        memory, keys, mask, state = self.model.encode(ids)
        tiled_memory, tiled_keys, tiled_mask, tiled_ids = (
            decoding.tile_beams(t, beam_width) for t in (memory, keys, mask, ids)
        )

        def step(tokens, state):
            model_state, attended = state
            scores, model_state, weights = self.model.decode_step(
                tokens, model_state, tiled_memory, tiled_keys, tiled_mask, source=tiled_ids
            )
            return scores, (model_state, attended + tf.cast(weights, attended.dtype))

        def coverage(state):
            # beta * sum_j log min(attention received by source position j, 1), over the real positions
            attended = tf.clip_by_value(state[1], 1e-10, 1.0)
            return coverage_penalty * tf.reduce_sum(tf.math.log(attended) * tf.cast(tiled_mask, tf.float32), axis=1)

        batch = tf.shape(ids)[0]
        start = tf.fill([batch], START_ID)
        state = (state, tf.zeros(tf.shape(ids), tf.float32))
        options = {
            "end_id": END_ID,
            "length_penalty": length_penalty,
            "n_best": n_best,
            "min_length": min_length,
            "penalty_fn": coverage,
        }

        def search(ngrams):
            return lambda: decoding.beam_search(
                step, state, start, beam_width, max_length, block_ngrams=ngrams, **options
            )

        out_ids, scores, lengths = tf.cond(block, search(TRIGRAM), search(0))
        return out_ids, scores, lengths, oov_words

    def _defaults(self):
        d = self.defaults
        return (
            tf.constant(d.length_penalty, tf.float32),
            tf.constant(d.coverage_penalty, tf.float32),
            tf.constant(d.min_length, tf.int32),
            tf.constant(d.max_length, tf.int32),
            tf.constant(d.block_trigrams, tf.bool),
        )

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        ids, scores, _, oov_words = self.decode_ids(text, self.defaults.beam_width, 1, *self._defaults())
        return {"summary": self._text(ids[:, 0], oov_words), "score": scores[:, 0]}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([], tf.int32, name="beam_width"),
            tf.TensorSpec([], tf.int32, name="n_best"),
            tf.TensorSpec([], tf.float32, name="length_penalty"),
            tf.TensorSpec([], tf.float32, name="coverage_penalty"),
            tf.TensorSpec([], tf.int32, name="min_length"),
            tf.TensorSpec([], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.bool, name="block_trigrams"),
        ]
    )
    def beam_search(
        self, text, beam_width, n_best, length_penalty, coverage_penalty, min_length, max_length, block_trigrams
    ):
        bounds = {**type(self.defaults).bounds(), "n_best": AT_LEAST_ONE}
        beam_width, n_best, length_penalty, coverage_penalty, min_length, max_length = decoding.checked(
            bounds,
            beam_width=beam_width,
            n_best=n_best,
            length_penalty=length_penalty,
            coverage_penalty=coverage_penalty,
            min_length=min_length,
            max_length=max_length,
        )
        checks = [
            tf.debugging.assert_less_equal(n_best, beam_width, "n_best cannot exceed beam_width"),
            tf.debugging.assert_less_equal(min_length, max_length, "min_length cannot exceed max_length"),
        ]
        with tf.control_dependencies(checks):
            beam_width = tf.identity(beam_width)
        ids, scores, lengths, oov_words = self.decode_ids(
            text, beam_width, n_best, length_penalty, coverage_penalty, min_length, max_length, block_trigrams
        )
        return {"summary": self._text(ids, oov_words), "score": scores, "ids": ids, "lengths": lengths}

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def greedy(self, text):
        _, _, min_length, max_length, block = self._defaults()
        # greedy as the beam search of width 1: the same tokens, scored by log-probability
        ids, scores, _, oov_words = self.decode_ids(text, 1, 1, 0.0, 0.0, min_length, max_length, block)
        return {"summary": self._text(ids[:, 0], oov_words), "score": scores[:, 0]}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="summary"),
        ]
    )
    def attention(self, text, summary):
        """What the teacher-forced decoder does reading `summary` for `text`:
        weights[b, t, j], how much summary token t (the t-th of
        summary_pieces, </s> last) attends to text piece j, and p_gen[b, t],
        the probability that token t is generated rather than copied (1
        without the copy distribution). Pieces are padded with "". The text
        is read as decoding reads it (max_source_length tokens), the summary
        up to the decoding max_length."""
        source, oov_words = self.source_ids(text)
        target_input, target = self._summary_ids(summary, source, oov_words)
        outputs = self.model.decoder_outputs((source, target_input))
        if self.pointer:
            p_gen = self.model.generation_probability(outputs)
        else:
            p_gen = tf.ones(tf.shape(target), tf.float32)
        return {
            "weights": outputs["attention"],
            "p_gen": p_gen,
            "text_pieces": _marked(self._words(source, oov_words), source),
            "summary_pieces": _marked(self._words(target, oov_words), target),
        }

    @serving_function(input_signature=[])
    def decoding_defaults(self):
        length_penalty, coverage_penalty, min_length, max_length, block = self._defaults()
        return {
            "beam_width": tf.constant(self.defaults.beam_width, tf.int32),
            "length_penalty": length_penalty,
            "coverage_penalty": coverage_penalty,
            "min_length": min_length,
            "max_length": max_length,
            "block_trigrams": block,
        }


def _marked(words, ids):
    """Token strings with </s> as "</s>" and padding as ""."""
    words = tf.where(tf.equal(ids, END_ID), "</s>", words)
    return tf.where(tf.equal(ids, PAD_ID), "", words)
