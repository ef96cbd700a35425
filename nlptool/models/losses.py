"""Losses and metrics per token, shared by the language model and the encoder-decoder."""

import math

import keras
import numpy as np
import tensorflow as tf

from nlptool.tokenizers import PAD_ID


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


FLOAT32_MAX = float(np.finfo(np.float32).max)


def perplexity(mean_nll):
    """exp(mean NLL per token), as inf once it leaves float32's range.

    Past 88.7 nats a token (a diverged model) the exponential leaves the
    range in which TensorBoard logs its scalars: a float64 1e285 would stop
    training there, where inf is logged and backed off from."""
    value = tf.exp(mean_nll)
    return tf.where(value > FLOAT32_MAX, tf.constant(math.inf, value.dtype), value)
