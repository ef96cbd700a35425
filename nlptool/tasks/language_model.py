"""Language modelling: config, model, token streams, generation module.

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

import dataclasses
import math
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils import tracking

from nlptool import decoding
from nlptool.layers import GRU
from nlptool.tokenizers import END_ID, PAD_ID, START_ID


@dataclasses.dataclass
class TokenizerConfig:
    kind: Literal["word", "char", "byte", "wordpiece", "sentencepiece"] = "word"
    vocab_size: int = 10_004  # reserved ids included
    # word only: pre-tokenised corpora (PTB, WikiText-2) keep case and punctuation as they are
    lowercase: bool = False
    split_punctuation: bool = False
    # "line": every line is a sentence ending in </s> (PTB, WikiText-2);
    # "text": the corpus is one text whose newlines are ordinary characters (character models)
    unit: Literal["line", "text"] = "line"


@dataclasses.dataclass
class ModelConfig:
    embedding_dim: int = 400
    units: int = 400  # GRU state size of every layer
    layers: int = 2
    dropout: float = 0.4  # variational: on each GRU layer's input and on the last output
    tie_weights: bool = True  # the softmax reuses the embedding matrix


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32  # parallel columns of the token stream
    window: int = 35  # time steps per truncated-BPTT window
    # SGD with a large rate and tight clipping, as Zaremba et al. and the PyTorch word-LM
    # example train: with Adam, states carried across windows saturate early in training
    # (every unit near +-1, a constant state that encodes the unigram distribution) and
    # learning stalls at unigram perplexity; SGD does not fall into it
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = 20.0
    lr_decay: float = 0.6  # the learning rate is multiplied by this every epoch from `lr_decay_start` on
    lr_decay_start: int = 3  # epochs at the full learning rate
    # after an epoch that ends with a validation perplexity above the best so far (a rate too
    # high for this corpus and model can throw a model off in one epoch), training goes on from
    # the best weights at the rate times this, from then on; None: on from where it is
    lr_backoff: float | None = 0.25
    clip_norm: float = 0.25  # global gradient norm clipping
    # 0: train on the full softmax. N > 0: a sampled softmax (Jean et al. 2015) over the
    # targets and N draws (with replacement) from a log-uniform (Zipf) distribution over the
    # ids, which the word tokeniser orders by frequency; 1,024 draws from 20,000 ids give
    # about 590 distinct words. Training then costs O(N) per token instead of
    # O(vocabulary); validation, evaluation and generation always use the full softmax.
    softmax_samples: int = 0
    max_minutes: float | None = None  # stop after the epoch that passes this wall-clock budget
    seed: int = 1234
    early_stopping_patience: int = 3

    def __post_init__(self):
        if self.lr_backoff is not None and not 0 < self.lr_backoff < 1:
            raise ValueError(f"lr_backoff must be between 0 and 1 (exclusive) or null, not {self.lr_backoff}.")


@dataclasses.dataclass
class GenerationConfig:
    max_new_tokens: int = 50
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no nucleus filter
    stop_at_end: bool = True  # stop a sample at </s> (for line-unit models)


@dataclasses.dataclass
class LanguageModelConfig:
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)


# === Token streams ===


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


def token_nll(logits, targets):
    """(sum of negative log-likelihoods, number of targets) of a batch of
    windows; padded targets (id 0) count for nothing."""
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
    weights = tf.cast(tf.not_equal(targets, PAD_ID), tf.float32)
    return tf.reduce_sum(losses * weights), tf.reduce_sum(weights)


class TokenNLL(keras.metrics.Metric):
    """Mean negative log-likelihood per token over all tokens seen (not per
    window, so a short last window weighs by its tokens)."""

    def __init__(self, name="nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable((), initializer="zeros", dtype="float64", name="total")
        self.count = self.add_variable((), initializer="zeros", dtype="float64", name="count")

    def update_state(self, nll_sum, count):
        self.total.assign_add(tf.cast(nll_sum, "float64"))
        self.count.assign_add(tf.cast(count, "float64"))

    def result(self):
        return self.total / tf.maximum(self.count, 1.0)


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

    @tracking.no_automatic_dependency_tracking
    def carry_states(self, batch_size):
        """Create the variables that carry the GRU states between windows of
        `batch_size` columns (not weights: never saved). Call before `fit`
        or `evaluate` with `window_dataset` batches of that size."""
        self._carried = [
            tf.Variable(tf.zeros((batch_size, self.units)), trainable=False, name=f"carried_state_{i}")
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
        mean = self.nll.result()
        return {"loss": mean, "perplexity": tf.exp(mean)}

    def train_step(self, data):
        ids, targets, states = self._window(data)
        with tf.GradientTape() as tape:
            outputs, new_states = self.encode(ids, states=states, training=True)
            if self.softmax_samples:
                nll_sum, count = self.sampled_nll(outputs, targets)
            else:
                nll_sum, count = token_nll(self.logits(outputs, training=True), targets)
            loss = nll_sum / tf.maximum(count, 1.0)
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
    return model


def stream_nll(model, stream, batch_size=1, window=200):
    """(sum of negative log-likelihoods in nats, tokens predicted) of `stream`
    under `model`, carrying state across windows: every token after the first
    is predicted from all of the tokens before it in its column (with the
    default single column, from everything before it in the stream)."""
    inputs, targets = stream_windows(stream, batch_size)

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
    return total, count


# === Generation module (exported) ===


class LanguageModelServing(tf.Module):
    """Prompt strings in, generated text out: the tokeniser, the model and
    the decoding loop in one graph (see `nlptool.decoding`). `text` is the
    continuation of each prompt, as the tokeniser detokenises it (up to the
    first </s>, which is not text).

    A prompt is tokenised with </s> in front (as every sentence follows one
    in the training stream); all of it but its last token
    runs through the GRU stack (masked, so prompts of any length share a
    batch), and its last token is the first input of the decoding loop.
    """

    def __init__(self, tokenizer, model, generation):
        super().__init__(name="language_model_serving")
        self.tokenizer = tokenizer
        self.model = model
        self.defaults = generation  # a GenerationConfig
        self.end_id = END_ID if generation.stop_at_end else -1

    def prompt_states(self, prompts):
        """(states after all but the last prompt token, the last token) for a batch of prompts."""
        ids = self.tokenizer(prompts)
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
        return tokens, lengths

    def beam_ids(self, prompts, max_new_tokens, beam_width):
        states, last = self.prompt_states(prompts)
        tokens, scores, _ = decoding.beam_search(
            self.step, states, last, beam_width, max_new_tokens, end_id=self.end_id
        )
        return tokens[:, 0], scores[:, 0]

    @tf.function(input_signature=[])
    def generation_defaults(self):
        """What `serving_default` uses for the arguments of `generate`."""
        d = self.defaults
        return {
            "max_new_tokens": tf.constant(d.max_new_tokens, tf.int32),
            "temperature": tf.constant(d.temperature, tf.float32),
            "top_k": tf.constant(d.top_k, tf.int32),
            "top_p": tf.constant(d.top_p, tf.float32),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def serve(self, prompt):
        d = self.defaults
        tokens, _ = self.generate_ids(prompt, d.max_new_tokens, d.temperature, d.top_k, d.top_p, 0)
        return {"text": self.tokenizer.detokenize(tokens)}

    @tf.function(
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
        tokens, lengths = self.generate_ids(prompt, max_new_tokens, temperature, top_k, top_p, seed)
        return {"text": self.tokenizer.detokenize(tokens), "ids": tokens, "lengths": lengths}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="prompt"),
            tf.TensorSpec([], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([], tf.int32, name="beam_width"),
        ]
    )
    def beam_search(self, prompt, max_new_tokens, beam_width):
        """The most probable continuation found by a beam search (log-probability in `score`)."""
        tokens, scores = self.beam_ids(prompt, max_new_tokens, beam_width)
        return {"text": self.tokenizer.detokenize(tokens), "score": scores}
