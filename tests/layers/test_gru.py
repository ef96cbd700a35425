"""nlptool.layers.GRU against keras.layers.GRU, and its Keras plumbing."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import in_fresh_process

from nlptool.layers import GRU

B, T, D, H = 3, 6, 5, 4

MASKS = {
    "none": None,
    "right": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]],
    "left": [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]],
    "gaps_and_empty_row": [[1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]],
}

# (implementation, jit_compile, training): training=True makes the fused path
# keep its recurrent products for backward, False makes backward recompute them.
PATHS = [
    ("fused", True, True),
    ("fused", True, False),
    ("fused", False, True),
    ("fused", False, False),
    ("reference", False, False),
]


def random_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(size=(B, H)).astype("float32")
    return tf.constant(x), tf.constant(h0)


def twin_layers(weight_seed=0, **kwargs):
    """A keras.layers.GRU and an nlptool GRU with the same random weights."""
    implementation = kwargs.pop("implementation", "auto")
    jit_compile = kwargs.pop("jit_compile", True)
    reference = keras.layers.GRU(H, **kwargs)
    ours = GRU(H, implementation=implementation, jit_compile=jit_compile, **kwargs)
    reference.build((None, T, D))
    ours.build((None, T, D))
    rng = np.random.default_rng(weight_seed + 100)
    weights = [0.5 * rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    ours.set_weights(weights)
    return reference, ours


def outputs_and_gradients(layer, x, h0=None, mask=None, training=False):
    """Every output and the gradient of a fixed scalar loss w.r.t. input,
    initial state and every weight."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        if h0 is not None:
            tape.watch(h0)
        result = layer(x, initial_state=h0, mask=mask, training=training)
        result = list(result) if isinstance(result, (list, tuple)) else [result]
        # weights break symmetry so that every output element matters
        loss = sum(tf.reduce_sum(r * tf.cos(tf.range(r.shape[-1], dtype=r.dtype))) for r in result)
    sources = [x] + ([h0] if h0 is not None else []) + list(layer.trainable_weights)
    return result + tape.gradient(loss, sources)


def assert_all_close(got, expected, atol=1e-5, rtol=0.0):
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=rtol, err_msg=f"item {i}")


@pytest.mark.parametrize("implementation,jit_compile,training", PATHS)
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_parity_with_keras(implementation, jit_compile, training, mask_name, go_backwards, reset_after):
    reference, ours = twin_layers(
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        reset_after=reset_after,
        implementation=implementation,
        jit_compile=jit_compile,
    )
    x, h0 = random_inputs()
    mask = None if MASKS[mask_name] is None else tf.constant(np.array(MASKS[mask_name], bool))
    expected = outputs_and_gradients(reference, x, h0, mask, training)
    got = outputs_and_gradients(ours, x, h0, mask, training)
    assert_all_close(got, expected)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("reset_after", [True, False])
def test_parity_without_bias(reset_after, training):
    reference, ours = twin_layers(return_sequences=True, return_state=True, use_bias=False, reset_after=reset_after)
    x, h0 = random_inputs(12)
    mask = tf.constant(np.array(MASKS["gaps_and_empty_row"], bool))
    assert_all_close(
        outputs_and_gradients(ours, x, h0, mask, training), outputs_and_gradients(reference, x, h0, mask, training)
    )


@pytest.mark.parametrize("batch", [1, 17, 40])
@pytest.mark.parametrize("training", [False, True])
def test_every_forward_variant_matches_keras(batch, training):
    """Batch 1 takes the XLA forward, 17 the in-loop input projection and 40
    (with 120 units) the projection of all steps first; run inside a
    tf.function with an unknown batch size, so the choice is the run-time
    tf.cond, and once eagerly, where it is made from the static shape."""
    units = 120
    reference = keras.layers.GRU(units, return_sequences=True)
    ours = GRU(units, return_sequences=True)
    reference.build((None, T, D))
    ours.build((None, T, D))
    ours.set_weights(reference.get_weights())
    x = tf.constant(np.random.default_rng(13).normal(size=(batch, T, D)).astype("float32"))
    expected = outputs_and_gradients(reference, x, training=training)
    graph = tf.function(
        lambda x: outputs_and_gradients(ours, x, training=training),
        input_signature=[tf.TensorSpec([None, T, D], tf.float32)],
    )
    # 120 units make weight gradients up to ~50: float32 rounding needs an rtol; and an input
    # gradient sums 360 gate terms of up to ~10, so a small one (-0.163) carries their rounding
    # (1.2e-5 seen once on CI, where threaded reductions sum in a varying order): atol 5e-5.
    # A wrong gate or bias is off by 1e-1 or more.
    assert_all_close(graph(x), expected, atol=5e-5, rtol=1e-5)
    assert_all_close(outputs_and_gradients(ours, x, training=training), expected, atol=5e-5, rtol=1e-5)


@pytest.mark.parametrize("mask_name", ["none", "right", "gaps_and_empty_row"])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_last_output_and_zero_output_for_mask(mask_name, zero_output_for_mask):
    reference, ours = twin_layers(return_sequences=False, zero_output_for_mask=zero_output_for_mask)
    x, _ = random_inputs(1)
    mask = None if MASKS[mask_name] is None else tf.constant(np.array(MASKS[mask_name], bool))
    assert_all_close(outputs_and_gradients(ours, x, mask=mask), outputs_and_gradients(reference, x, mask=mask))


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mask_name", ["none", "right", "left"])
def test_bidirectional_parity(return_sequences, mask_name):
    reference_layer, our_layer = twin_layers(return_sequences=return_sequences, return_state=True)
    reference = keras.layers.Bidirectional(reference_layer)
    ours = keras.layers.Bidirectional(our_layer)
    reference.build((None, T, D))
    ours.build((None, T, D))
    ours.set_weights(reference.get_weights())
    x, _ = random_inputs(2)
    mask = None if MASKS[mask_name] is None else tf.constant(np.array(MASKS[mask_name], bool))
    assert_all_close(outputs_and_gradients(ours, x, mask=mask), outputs_and_gradients(reference, x, mask=mask))


def test_weights_have_keras_names_shapes_and_order():
    for reset_after, bias_shape in ((True, (2, 3 * H)), (False, (3 * H,))):
        reference, ours = twin_layers(reset_after=reset_after)
        assert [tuple(w.shape) for w in ours.weights] == [(D, 3 * H), (H, 3 * H), bias_shape]
        assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
        # and the other way: our weights into Keras give Keras the same outputs
        reference.set_weights(ours.get_weights())
        x, _ = random_inputs(3)
        np.testing.assert_allclose(reference(x), ours(x), atol=1e-6)


def test_recurrent_dropout_fused_matches_reference_with_same_masks():
    """Same seed, same dropout masks: the fused path's hand-written backward
    must agree with automatic differentiation of the reference path."""
    x, h0 = random_inputs(4)
    results = []
    for implementation in ("fused", "reference"):
        _, layer = twin_layers(
            return_sequences=True,
            dropout=0.3,
            recurrent_dropout=0.4,
            seed=7,
            implementation=implementation,
        )
        results.append(outputs_and_gradients(layer, x, h0, tf.constant(np.array(MASKS["left"], bool)), True))
    assert_all_close(*results)
    # dropout is really applied in training and not at inference
    _, plain = twin_layers(return_sequences=True)
    assert np.max(np.abs(np.asarray(results[0][0]) - np.asarray(plain(x, initial_state=h0)))) > 1e-3


def test_dropout_is_off_at_inference():
    _, with_dropout = twin_layers(dropout=0.5, recurrent_dropout=0.5, seed=3)
    _, plain = twin_layers()
    x, _ = random_inputs(5)
    np.testing.assert_allclose(with_dropout(x, training=False), plain(x), atol=1e-6)


def test_stateful_carries_state_between_calls_and_resets():
    rng = np.random.default_rng(6)
    weights_source = GRU(H, return_sequences=True)
    weights_source.build((B, T, D))
    x = rng.normal(size=(B, T, D)).astype("float32")
    full = weights_source(x).numpy()
    stateful = GRU(H, return_sequences=True, stateful=True)
    stateful.build((B, T // 2, D))
    stateful.set_weights(weights_source.get_weights())
    assert len(stateful.weights) == 3  # the state is not a weight, as in Keras
    first = stateful(x[:, : T // 2]).numpy()
    second = stateful(x[:, T // 2 :]).numpy()
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, atol=1e-6)
    stateful.reset_state()
    np.testing.assert_allclose(stateful(x[:, : T // 2]), first, atol=1e-6)


def test_stateful_needs_a_fixed_batch_size():
    with pytest.raises(ValueError, match="fixed batch size"):
        GRU(H, stateful=True).build((None, T, D))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x, _ = random_inputs(7)
    _, full_precision = twin_layers(return_sequences=True)
    expected = full_precision(x).numpy()
    try:
        keras.config.set_dtype_policy(policy)
        half = GRU(H, return_sequences=True)
        half.build((None, T, D))
        half.set_weights(full_precision.get_weights())
        out = half(x)
        assert half.kernel.dtype == "float32"  # variables stay in float32
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(half(x, training=True), tf.float32))
        grads = tape.gradient(loss, half.trainable_weights)
    finally:
        keras.config.set_dtype_policy("float32")
    assert out.dtype == keras.mixed_precision.Policy(policy).compute_dtype
    np.testing.assert_allclose(np.asarray(tf.cast(out, tf.float32)), expected, atol=3e-2)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_gate_activations_reproduce_the_layer():
    _, layer = twin_layers(return_sequences=True)
    x, h0 = random_inputs(8)
    mask = tf.constant(np.array(MASKS["gaps_and_empty_row"], bool))
    gates = layer.gate_activations(x, mask=mask, initial_state=h0)
    assert set(gates) == {"z", "r", "candidate", "state"}
    z, c, state = (np.asarray(gates[k]) for k in ("z", "candidate", "state"))
    previous = np.concatenate([np.asarray(h0)[:, None], state[:, :-1]], axis=1)
    live = np.asarray(mask)[..., None]
    # h_t = z * h_{t-1} + (1 - z) * h~ at live steps; the state is kept at masked ones
    np.testing.assert_allclose(np.where(live, z * previous + (1 - z) * c, previous), state, atol=1e-6)
    # the first step's update gate, by hand from the weights (Keras gate order z, r, h)
    kernel, recurrent_kernel, bias = layer.get_weights()
    pre = np.asarray(x)[:, 0] @ kernel[:, :H] + bias[0, :H] + np.asarray(h0) @ recurrent_kernel[:, :H] + bias[1, :H]
    expected_z0 = 1 / (1 + np.exp(-pre))
    np.testing.assert_allclose(z[:, 0][live[:, 0, 0]], expected_z0[live[:, 0, 0]], atol=1e-6)
    # rows with a live step: the layer's last output is the final state
    outputs = np.asarray(layer(x, initial_state=h0, mask=mask))
    rows = live.any(axis=1)[:, 0]
    np.testing.assert_allclose(state[rows, -1], outputs[rows, -1], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"units": -3}, "argument `units`, expected a positive integer, got -3"),
        ({"units": 4, "dropout": 1.5}, "argument `dropout`"),
        ({"units": 4, "implementation": "fast"}, "argument `implementation`"),
        ({"units": 4, "implementation": "fused", "activation": "relu"}, "activation must be 'tanh'"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        GRU(**kwargs)


def test_non_tanh_activation_uses_reference_path_and_matches_keras():
    reference, ours = twin_layers(return_sequences=True, activation="relu", recurrent_activation="hard_sigmoid")
    assert ours.resolved_implementation() == "reference"
    x, _ = random_inputs(9)
    assert_all_close(outputs_and_gradients(ours, x), outputs_and_gradients(reference, x))


def test_config_round_trip():
    layer = GRU(
        7,
        dropout=0.1,
        recurrent_dropout=0.2,
        return_sequences=True,
        go_backwards=True,
        reset_after=False,
        implementation="reference",
        jit_compile=False,
        seed=3,
    )
    clone = GRU.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def small_model():
    inputs = keras.Input(shape=(None, D))
    x = keras.layers.Masking()(inputs)
    x = keras.layers.Bidirectional(GRU(H, return_sequences=True))(x)
    x = GRU(H, go_backwards=True)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_keras_file_round_trip(tmp_path):
    model = small_model()
    x = np.random.default_rng(10).normal(size=(B, T, D)).astype("float32")
    x[0, 4:] = 0.0  # masked by Masking
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[-2], GRU)
    np.testing.assert_allclose(restored(x), model(x), atol=1e-6)


def test_saved_model_reloads_in_a_process_without_nlptool(tmp_path):
    model = small_model()
    x = np.random.default_rng(11).normal(size=(B, T, D)).astype("float32")
    x[1, 3:] = 0.0
    export_dir = tmp_path / "export"
    model.export(str(export_dir), format="tf_saved_model")
    np.save(tmp_path / "x.npy", x)
    reloaded = np.array(
        in_fresh_process(
            f"""
            import json, numpy as np, tensorflow as tf
            loaded = tf.saved_model.load({str(export_dir)!r})
            out = loaded.serve(tf.constant(np.load({str(tmp_path / "x.npy")!r})))
            print(json.dumps(np.asarray(out).tolist()))
            """
        )
    )
    np.testing.assert_allclose(reloaded, model(x), atol=1e-5)
