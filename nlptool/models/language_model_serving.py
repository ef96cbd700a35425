"""The serving module of a language model: prompts in, generated text out."""

import tensorflow as tf

from nlptool import decoding
from nlptool.export import ServingModule, serving_function
from nlptool.tasks.base import BEAM_WIDTH
from nlptool.tokenizers import END_ID, PAD_ID, START_ID


class LanguageModelServing(ServingModule):
    """Prompt strings in, generated text out: the tokeniser, the model and
    the decoding loop in one graph (see `nlptool.decoding`). `text` is the
    continuation of each prompt, as the tokeniser detokenises it (up to the
    first </s>, which is not text).

    A prompt is tokenised, cut to its last `max_prompt_tokens` tokens (the
    generation config's; one request's time and memory stay bounded), and
    given </s> in front (as every sentence follows one in the training
    stream); all of it but its last token runs through the GRU stack
    (masked, so prompts of any length share a batch), and its last token is
    the first input of the decoding loop.

    A `backward` model reads text from its end: `text` is what comes before
    the prompt. The prompt is cut to its first `max_prompt_tokens` tokens
    and read last token first, and the generated tokens, which come out
    nearest the prompt first, are put back in reading order.
    """

    def __init__(self, tokenizer, model, generation, backward=False):
        super().__init__(model, name="language_model_serving")
        self.tokenizer = tokenizer
        self.defaults = generation  # a GenerationConfig
        self.end_id = END_ID if generation.stop_at_end else -1
        self.backward = backward

    def prompt_states(self, prompts):
        """(states after all but the last prompt token, the last token) for a batch of prompts."""
        keep = "first" if self.backward else "last"  # the context nearest the generated text
        ids = self.tokenizer.cut(prompts, self.defaults.max_prompt_tokens, keep=keep)
        if self.backward:
            ids = tf.reverse_sequence(ids, _text_lengths(ids), seq_axis=1, batch_axis=0)
        batch = tf.shape(ids)[0]
        # training streams open with </s> and mark every sentence end with it: it is the context of a new text
        ids = tf.concat([tf.fill([batch, 1], END_ID), ids], axis=1)
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(ids, PAD_ID), tf.int32), axis=1)
        last = tf.gather(ids, lengths - 1, batch_dims=1)
        context = tf.where(tf.sequence_mask(lengths - 1, tf.shape(ids)[1]), ids, tf.zeros_like(ids))
        _, states = self.model(context, states=self.model.initial_states(batch), training=False)
        return states, last

    def step(self, tokens, states):
        """The model's step, never proposing <pad> or <s> (they are not text),
        nor </s> when generation does not stop there."""
        logits, states = self.model.step(tokens, states)
        banned = [PAD_ID, START_ID] + ([] if self.end_id == END_ID else [END_ID])
        banned = tf.one_hot(banned, tf.shape(logits)[-1], on_value=True, off_value=False)
        return tf.where(tf.reduce_any(banned, axis=0), tf.cast(-1e9, logits.dtype), logits), states

    def generate_ids(self, prompts, max_new_tokens, temperature, top_k, top_p, seed):
        states, last = self.prompt_states(prompts)
        tokens, lengths = decoding.sample(
            self.step,
            states,
            last,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            end_id=self.end_id,
        )
        return self.reading_order(tokens), lengths

    def beam_ids(self, prompts, max_new_tokens, beam_width, length_penalty=0.0, min_new_tokens=0):
        states, last = self.prompt_states(prompts)
        tokens, scores, _ = decoding.beam_search(
            self.step,
            states,
            last,
            beam_width,
            max_new_tokens,
            end_id=self.end_id,
            length_penalty=length_penalty,
            min_length=min_new_tokens + 1,  # the end token counts in a hypothesis's length, and is not text
        )
        return self.reading_order(tokens[:, 0]), scores[:, 0]

    def reading_order(self, tokens):
        """Generated tokens (batch, steps) as the text reads: as they are for a
        forward model; for a backward one, the tokens before the first </s>
        reversed (the end and what follows it are not text)."""
        if not self.backward:
            return tokens
        lengths = _text_lengths(tokens)
        text = tf.where(tf.sequence_mask(lengths, tf.shape(tokens)[1]), tokens, tf.zeros_like(tokens))
        return tf.reverse_sequence(text, lengths, seq_axis=1, batch_axis=0)

    @serving_function(input_signature=[])
    def generation_defaults(self):
        """What `serving_default` uses for the arguments of `generate`."""
        d = self.defaults
        return {
            "max_new_tokens": tf.constant(d.max_new_tokens, tf.int32),
            "temperature": tf.constant(d.temperature, tf.float32),
            "top_k": tf.constant(d.top_k, tf.int32),
            "top_p": tf.constant(d.top_p, tf.float32),
            "length_penalty": tf.constant(d.length_penalty, tf.float32),
            "min_new_tokens": tf.constant(d.min_new_tokens, tf.int32),
        }

    @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def serve(self, prompt):
        d = self.defaults
        tokens, _ = self.generate_ids(prompt, d.max_new_tokens, d.temperature, d.top_k, d.top_p, 0)
        return {"text": self.tokenizer.detokenize(tokens)}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        max_new_tokens, temperature, top_k, top_p = decoding.checked(
            type(self.defaults).bounds(),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        tokens, lengths = self.generate_ids(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        return {"text": self.tokenizer.detokenize(tokens), "ids": tokens, "lengths": lengths}

    @serving_function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([], tf.int32, name="beam_width"),
            tf.TensorSpec([], tf.float32, name="length_penalty"),
            tf.TensorSpec([], tf.int32, name="min_new_tokens"),
        ]
    )
    def beam_search(self, prompt, max_new_tokens, beam_width, length_penalty, min_new_tokens):
        """The best continuation found by a beam search: the highest log-probability
        over ((5 + length) / 6) ** length_penalty, in `score`, among those of at
        least `min_new_tokens` tokens (`generation_defaults` has the run's settings)."""
        bounds = {**type(self.defaults).bounds(), "beam_width": BEAM_WIDTH}
        max_new_tokens, beam_width, length_penalty, min_new_tokens = decoding.checked(
            bounds,
            max_new_tokens=max_new_tokens,
            beam_width=beam_width,
            length_penalty=length_penalty,
            min_new_tokens=min_new_tokens,
        )
        tokens, scores = self.beam_ids(prompt, max_new_tokens, beam_width, length_penalty, min_new_tokens)
        return {"text": self.tokenizer.detokenize(tokens), "score": scores}


def _text_lengths(ids):
    """(batch,) int32: each row's tokens before its first </s> or <pad>."""
    stop = tf.logical_or(tf.equal(ids, END_ID), tf.equal(ids, PAD_ID))
    return tf.reduce_sum(tf.cast(tf.equal(tf.cumsum(tf.cast(stop, tf.int32), axis=1), 0), tf.int32), axis=1)
