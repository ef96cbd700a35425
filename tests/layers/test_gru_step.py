"""`GRU.step`: one time step with the layer's own weights, as decoders use it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from nlptool.layers import GRU

B, T, D, H = 3, 4, 5, 6


def layer_with_random_weights(**kwargs):
    layer = GRU(H, return_sequences=True, return_state=True, **kwargs)
    layer.build((None, T, D))
    rng = np.random.default_rng(0)
    # biases too (they start at zero), so that every term of the equations shows
    layer.set_weights([rng.normal(scale=0.7, size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def numpy_step(layer, x, h):
    """The GRU equations of the layer's docstring, written out."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    weights = layer.get_weights()
    kernel, recurrent = weights[0], weights[1]
    if not layer.use_bias:
        b_in, b_rec = np.zeros(3 * H), np.zeros(3 * H)
    elif layer.reset_after:
        b_in, b_rec = weights[2]
    else:
        b_in, b_rec = weights[2], np.zeros(3 * H)
    xp = x @ kernel + b_in
    z = sigmoid(xp[:, :H] + h @ recurrent[:, :H] + b_rec[:H])
    r = sigmoid(xp[:, H : 2 * H] + h @ recurrent[:, H : 2 * H] + b_rec[H : 2 * H])
    if layer.reset_after:
        candidate = np.tanh(xp[:, 2 * H :] + r * (h @ recurrent[:, 2 * H :] + b_rec[2 * H :]))
    else:
        candidate = np.tanh(xp[:, 2 * H :] + (r * h) @ recurrent[:, 2 * H :])
    return z * h + (1 - z) * candidate


CASES = [
    {"reset_after": True},
    {"reset_after": False},
    {"reset_after": True, "use_bias": False},
    {"reset_after": True, "implementation": "reference", "jit_compile": False},
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_step_equals_the_layer_on_a_length_one_sequence(kwargs):
    layer = layer_with_random_weights(**kwargs)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, D)).astype("float32")
    h = rng.normal(size=(B, H)).astype("float32")
    stepped = layer.step(tf.constant(x), tf.constant(h)).numpy()
    outputs, state = layer(x[:, None, :], initial_state=tf.constant(h))
    np.testing.assert_allclose(stepped, state.numpy(), atol=1e-6)
    np.testing.assert_allclose(stepped, outputs.numpy()[:, 0], atol=1e-6)
    np.testing.assert_allclose(stepped, numpy_step(layer, x, h), atol=1e-5)
    assert stepped.shape == (B, H) and stepped.dtype == np.float32


@pytest.mark.parametrize("reset_after", [True, False])
def test_steps_in_a_tf_function_follow_the_whole_sequence(reset_after):
    layer = layer_with_random_weights(reset_after=reset_after, dropout=0.5)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(size=(B, H)).astype("float32")

    @tf.function
    def unrolled(x, h):
        states = []
        for t in range(T):
            h = layer.step(x[:, t], h)
            states.append(h)
        return tf.stack(states, axis=1)

    outputs, _ = layer(x, initial_state=tf.constant(h0), training=False)
    np.testing.assert_allclose(unrolled(tf.constant(x), tf.constant(h0)).numpy(), outputs.numpy(), atol=1e-5)
