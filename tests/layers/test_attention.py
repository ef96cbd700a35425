"""nlptool.layers.BahdanauAttention against a NumPy reference, and its TF/Keras plumbing."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import doctest
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import nlptool.layers.attention as attention_module
from nlptool.layers import BahdanauAttention

B, T, S, QD, MD, U = 3, 4, 6, 5, 7, 8

MASKS = {
    "none": None,
    "right": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]],
    "left": [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]],
    "gaps": [[1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 0]],
}
EMPTY_ROW_MASK = [[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]]


def as_mask(mask):
    return None if mask is None else tf.constant(np.asarray(mask, bool))


def random_inputs(seed=0, steps=None):
    """A query (batch, QD), or (batch, steps, QD), and a memory (batch, S, MD)."""
    rng = np.random.default_rng(seed)
    query_shape = (B, QD) if steps is None else (B, steps, QD)
    query = rng.normal(size=query_shape).astype("float32")
    memory = rng.normal(size=(B, S, MD)).astype("float32")
    return tf.constant(query), tf.constant(memory)


def make_layer(use_bias=True, seed=0, **kwargs):
    """A built layer with large random weights, so that attention is far from uniform."""
    layer = BahdanauAttention(U, use_bias=use_bias, **kwargs)
    layer.build((None, QD), (None, None, MD))
    rng = np.random.default_rng(seed + 100)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def reference(layer, query, memory, mask=None, coverage=None):
    """The equations in float64 NumPy, with weights read from the layer by name."""
    weights = {v.name: np.asarray(v, np.float64) for v in layer.weights}
    query, memory = np.asarray(query, np.float64), np.asarray(memory, np.float64)
    single_step = query.ndim == 2
    if single_step:
        query = query[:, None, :]
    keys = memory @ weights["memory_kernel"]  # (batch, S, U)
    if "bias" in weights:
        keys = keys + weights["bias"]
    processed = query @ weights["query_kernel"]  # (batch, T, U)
    features = processed[:, :, None, :] + keys[:, None, :, :]
    if coverage is not None:  # (batch, [T,] S): w_c c_j inside the tanh
        coverage = np.asarray(coverage, np.float64)
        coverage = coverage[:, None, :] if single_step else coverage
        features = features + coverage[..., None] * weights["coverage_kernel"]
    scores = np.tanh(features) @ weights["score_vector"]  # (batch, T, S)
    valid = np.ones(memory.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    valid = np.broadcast_to(valid[:, None, :], scores.shape)
    alpha = np.zeros_like(scores)
    for index in np.ndindex(scores.shape[:2]):
        row, keep = scores[index], valid[index]
        if keep.any():
            e = np.exp(row[keep] - row[keep].max())
            alpha[index][keep] = e / e.sum()
    context = alpha @ memory  # (batch, T, MD)
    if single_step:
        return context[:, 0], alpha[:, 0]
    return context, alpha


def weighted_loss(context, weights):
    """A scalar in which every output element matters (a plain sum of weights is constant)."""
    loss = tf.reduce_sum(context * tf.cos(tf.range(context.shape[-1], dtype=context.dtype)))
    return loss + tf.reduce_sum(weights * tf.sin(1.0 + tf.range(weights.shape[-1], dtype=weights.dtype)))


# === 1. Normalisation and masking ===


@pytest.mark.parametrize("mask_name", [m for m in MASKS if m != "none"])
@pytest.mark.parametrize("steps", [None, T])
def test_weights_sum_to_one_over_valid_positions_and_are_zero_on_padding(mask_name, steps):
    layer = make_layer()
    query, memory = random_inputs(steps=steps)
    _, weights = layer(query, memory, mask=as_mask(MASKS[mask_name]))
    weights = weights.numpy()
    valid = np.asarray(MASKS[mask_name], bool)
    if steps is not None:
        valid = np.broadcast_to(valid[:, None, :], weights.shape)
    assert (weights[~valid] == 0.0).all()  # exactly zero, not merely small
    assert (weights[valid] > 0.0).all()
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-6)


# === 2. The equations ===


@pytest.mark.parametrize("mask_name", ["none", "gaps"])
@pytest.mark.parametrize("steps", [None, T])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_numpy_reference(use_bias, steps, mask_name):
    layer = make_layer(use_bias=use_bias)
    assert len(layer.weights) == (4 if use_bias else 3)
    query, memory = random_inputs(steps=steps)
    mask = MASKS[mask_name]
    context, weights = layer(query, memory, mask=as_mask(mask))
    expected_context, expected_weights = reference(layer, query, memory, mask)
    assert context.shape == expected_context.shape and weights.shape == expected_weights.shape
    np.testing.assert_allclose(weights.numpy(), expected_weights, atol=1e-5)
    np.testing.assert_allclose(context.numpy(), expected_context, atol=1e-5)


def test_one_step_equals_the_matching_row_of_all_steps():
    layer = make_layer()
    queries, memory = random_inputs(steps=T)
    mask = as_mask(MASKS["left"])
    all_context, all_weights = layer(queries, memory, mask=mask)
    for t in range(T):
        context, weights = layer(queries[:, t], memory, mask=mask)
        np.testing.assert_allclose(context.numpy(), all_context[:, t].numpy(), atol=1e-6)
        np.testing.assert_allclose(weights.numpy(), all_weights[:, t].numpy(), atol=1e-6)


# === 3. Precomputed keys ===


def test_precomputed_keys_give_the_same_result():
    layer = make_layer()
    query, memory = random_inputs()
    mask = as_mask(MASKS["gaps"])
    keys = layer.precompute(memory)
    assert keys.shape == (B, S, U)
    with_keys = layer(query, memory, keys=keys, mask=mask)
    without_keys = layer(query, memory, mask=mask)
    for a, b in zip(with_keys, without_keys):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_passed_keys_are_used_instead_of_recomputing_them():
    layer = make_layer()
    query, memory = random_inputs()
    keys = layer.precompute(memory)

    # the memory projection runs only when no keys are passed
    with mock.patch.object(
        BahdanauAttention, "precompute", autospec=True, side_effect=BahdanauAttention.precompute
    ) as precompute:
        layer(query, memory, keys=keys)
        assert precompute.call_count == 0
        layer(query, memory)
        assert precompute.call_count == 1

    # the result follows the keys passed, even wrong ones
    right = layer(query, memory, keys=keys)[1].numpy()
    wrong = layer(query, memory, keys=tf.reverse(keys, axis=[1]))[1].numpy()
    assert np.abs(right - wrong).max() > 1e-3

    # and W_h, b are not part of the computation
    with tf.GradientTape() as tape:
        loss = weighted_loss(*layer(query, memory, keys=keys))
    gradients = dict(zip([v.name for v in layer.trainable_weights], tape.gradient(loss, layer.trainable_weights)))
    assert gradients["memory_kernel"] is None and gradients["bias"] is None
    assert gradients["query_kernel"] is not None and gradients["score_vector"] is not None


# === 4. and 5. Empty rows and gradients ===


@pytest.mark.parametrize("steps", [None, T])
def test_fully_masked_row_gives_zeros_without_nan(steps):
    layer = make_layer()
    query, memory = random_inputs(steps=steps)
    mask = as_mask(EMPTY_ROW_MASK)
    with tf.GradientTape() as tape:
        tape.watch([query, memory])
        context, weights = layer(query, memory, mask=mask)
        loss = weighted_loss(context, weights)
    sources = [query, memory] + list(layer.trainable_weights)
    gradients = tape.gradient(loss, sources)
    assert (context[1].numpy() == 0.0).all() and (weights[1].numpy() == 0.0).all()
    assert np.isfinite(context.numpy()).all() and np.isfinite(weights.numpy()).all()
    for gradient in gradients:
        assert np.isfinite(np.asarray(gradient)).all()
    # the empty row neither receives nor sends gradient; the other rows are untouched
    assert (gradients[0][1].numpy() == 0.0).all() and (gradients[1][1].numpy() == 0.0).all()
    expected_context, expected_weights = reference(layer, query, memory, EMPTY_ROW_MASK)
    np.testing.assert_allclose(context.numpy(), expected_context, atol=1e-5)
    np.testing.assert_allclose(weights.numpy(), expected_weights, atol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
def test_gradients_reach_every_weight_the_query_and_the_memory(use_bias):
    layer = make_layer(use_bias=use_bias)
    query, memory = random_inputs()
    with tf.GradientTape() as tape:
        tape.watch([query, memory])
        loss = weighted_loss(*layer(query, memory, mask=as_mask(MASKS["right"])))
    sources = [query, memory] + list(layer.trainable_weights)
    names = ["query", "memory"] + [v.name for v in layer.trainable_weights]
    for name, gradient in zip(names, tape.gradient(loss, sources)):
        assert gradient is not None, name
        assert np.isfinite(gradient.numpy()).all(), name
        assert np.abs(gradient.numpy()).max() > 1e-6, name


# === 6. Graphs: tf.function, tf.while_loop, SavedModel ===


def decode_loop(layer, queries, memory, mask):
    """Attends step by step in a tf.while_loop, as a decoder would, with the keys computed once."""
    keys = layer.precompute(memory)
    steps = tf.shape(queries)[1]
    contexts = tf.TensorArray(queries.dtype, size=steps)

    def body(t, contexts):
        context, _ = layer(queries[:, t], memory, keys=keys, mask=mask)
        return t + 1, contexts.write(t, context)

    _, contexts = tf.while_loop(lambda t, _: t < steps, body, (tf.constant(0), contexts))
    return tf.transpose(contexts.stack(), [1, 0, 2])


SIGNATURE = [
    tf.TensorSpec((None, None, QD), tf.float32),
    tf.TensorSpec((None, None, MD), tf.float32),
    tf.TensorSpec((None, None), tf.bool),
]


def test_tf_function_with_unknown_batch_and_source_length():
    layer = make_layer()

    @tf.function(input_signature=SIGNATURE)
    def attend(queries, memory, mask):
        return layer(queries[:, 0], memory, keys=layer.precompute(memory), mask=mask)

    for batch, source_len in [(B, S), (2, 9)]:
        rng = np.random.default_rng(batch)
        queries = rng.normal(size=(batch, 1, QD)).astype("float32")
        memory = rng.normal(size=(batch, source_len, MD)).astype("float32")
        mask = rng.random((batch, source_len)) < 0.7
        context, weights = attend(queries, memory, mask)
        expected_context, expected_weights = reference(layer, queries[:, 0], memory, mask)
        np.testing.assert_allclose(context.numpy(), expected_context, atol=1e-5)
        np.testing.assert_allclose(weights.numpy(), expected_weights, atol=1e-5)
    assert attend.experimental_get_tracing_count() == 1


def test_tf_while_loop_over_decoder_steps_matches_all_steps_at_once():
    layer = make_layer()
    queries, memory = random_inputs(steps=T)
    mask = as_mask(MASKS["gaps"])
    contexts = tf.function(decode_loop, reduce_retracing=True)(layer, queries, memory, mask)
    expected, _ = reference(layer, queries, memory, MASKS["gaps"])
    np.testing.assert_allclose(contexts.numpy(), expected, atol=1e-5)


class Attender(tf.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    @tf.function(input_signature=SIGNATURE)
    def attend(self, queries, memory, mask):
        return self.layer(queries, memory, mask=mask)

    @tf.function(input_signature=SIGNATURE)
    def decode(self, queries, memory, mask):
        return decode_loop(self.layer, queries, memory, mask)


def test_saved_model_round_trip(tmp_path):
    module = Attender(make_layer())
    queries, memory = random_inputs(steps=T)
    mask = as_mask(MASKS["left"])
    expected_attend = module.attend(queries, memory, mask)
    expected_decode = module.decode(queries, memory, mask)
    tf.saved_model.save(module, str(tmp_path / "attender"))
    del module

    loaded = tf.saved_model.load(str(tmp_path / "attender"))
    for got, expected in zip(loaded.attend(queries, memory, mask), expected_attend):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_array_equal(loaded.decode(queries, memory, mask).numpy(), expected_decode.numpy())
    np.testing.assert_allclose(expected_decode.numpy(), expected_attend[0].numpy(), atol=1e-6)


# === 7. Keras serialisation ===


@pytest.mark.parametrize("use_bias", [True, False])
def test_get_config_round_trip(use_bias):
    layer = make_layer(use_bias=use_bias, bias_initializer="ones", name="attend")
    config = layer.get_config()
    clone = BahdanauAttention.from_config(config)
    assert clone.get_config() == config
    assert (clone.units, clone.use_bias, clone.name) == (U, use_bias, "attend")
    clone.build((None, QD), (None, None, MD))
    clone.set_weights(layer.get_weights())
    query, memory = random_inputs()
    mask = as_mask(MASKS["gaps"])
    for a, b in zip(layer(query, memory, mask=mask), clone(query, memory, mask=mask)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keras_file_round_trip(tmp_path):
    queries_in = keras.Input((None, QD))
    memory_in = keras.Input((None, MD))
    mask_in = keras.Input((None,), dtype="bool")
    context, weights = BahdanauAttention(U, use_bias=False, name="attention")(queries_in, memory_in, mask=mask_in)
    model = keras.Model([queries_in, memory_in, mask_in], [keras.layers.Dense(3)(context), weights])
    model.get_layer("attention").set_weights(make_layer(use_bias=False).get_weights())

    queries, memory = random_inputs(steps=T)
    inputs = [queries, memory, as_mask(MASKS["right"])]
    expected = model(inputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("attention"), BahdanauAttention)
    assert loaded.get_layer("attention").use_bias is False
    for got, want in zip(loaded(inputs), expected):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# === Building, dtypes, docs ===


def test_explicit_build_allows_precompute_before_the_first_call():
    layer = BahdanauAttention(U)
    with pytest.raises(ValueError, match="not built"):
        layer.precompute(tf.zeros((B, S, MD)))
    layer.build(query_shape=(None, QD), memory_shape=(None, None, MD))
    query, memory = random_inputs()
    context, weights = layer(query, memory, keys=layer.precompute(memory))
    assert context.shape == (B, MD) and weights.shape == (B, S)
    with pytest.raises(ValueError, match="must be defined"):
        BahdanauAttention(U).build((None, QD), (None, None, None))
    with pytest.raises(ValueError, match="rank 2 or 3"):
        layer(tf.zeros((B, 1, 1, QD)), memory)


def test_mixed_precision_keeps_float32_weights_and_exact_zeros():
    layer = make_layer(dtype="mixed_float16")
    assert all(v.dtype == "float32" for v in layer.weights)
    query, memory = random_inputs()
    keys = layer.precompute(memory)  # outside __call__, so no autocasting from Keras
    assert keys.dtype == tf.float16
    context, weights = layer(query, memory, keys=keys, mask=as_mask(MASKS["gaps"]))
    assert context.dtype == tf.float16 and weights.dtype == tf.float16
    assert (weights.numpy()[~np.asarray(MASKS["gaps"], bool)] == 0.0).all()
    expected_context, expected_weights = reference(layer, query, memory, MASKS["gaps"])
    np.testing.assert_allclose(weights.numpy(), expected_weights, atol=2e-2)
    np.testing.assert_allclose(context.numpy(), expected_context, atol=5e-2)


def test_softmax_runs_in_float32_under_mixed_precision():
    layer = make_layer(dtype="mixed_float16")
    scores = tf.constant([[[1.0, 2.0, 3.0]]], tf.float16)
    with mock.patch.object(tf.nn, "softmax", wraps=tf.nn.softmax) as softmax:
        layer._masked_softmax(scores, tf.constant([[True, True, False]]))
    assert softmax.call_args.args[0].dtype == tf.float32


def test_docstring_example():
    result = doctest.testmod(attention_module, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


# === Coverage (See et al. 2017) ===


@pytest.mark.parametrize("steps", [None, 3])
def test_coverage_enters_the_score_as_the_reference_says(steps):
    layer = make_layer(coverage=True)
    query, memory = random_inputs(5, steps)
    shape = (B, S) if steps is None else (B, steps, S)
    coverage = tf.constant(np.random.default_rng(6).uniform(0, 2, size=shape).astype("float32"))
    mask = as_mask(MASKS["gaps"])
    context, weights = layer(query, memory, mask=mask, coverage=coverage)
    expected_context, expected_weights = reference(layer, query, memory, MASKS["gaps"], coverage)
    np.testing.assert_allclose(weights.numpy(), expected_weights, atol=1e-5)
    np.testing.assert_allclose(context.numpy(), expected_context, atol=1e-5)
    # not vacuous: without the coverage the weights differ
    _, plain = reference(layer, query, memory, MASKS["gaps"])
    assert np.abs(plain - expected_weights).max() > 0.05


def test_coverage_starts_at_zero_weight_and_is_checked():
    layer = BahdanauAttention(U, coverage=True)
    layer.build((None, QD), (None, None, MD))
    assert [w.name for w in layer.weights][-1] == "coverage_kernel"
    assert not layer.coverage_kernel.numpy().any()  # starts as attention without coverage
    query, memory = random_inputs(1)
    with pytest.raises(ValueError, match="coverage=True: pass `coverage`"):
        layer(query, memory)
    plain = make_layer()
    with pytest.raises(ValueError, match="without coverage"):
        plain(query, memory, coverage=tf.zeros((B, S)))
    restored = BahdanauAttention.from_config(layer.get_config())
    assert restored.coverage is True
