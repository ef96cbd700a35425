"""The cuDNN path of `nlptool.layers.GRU`, exercised on a CPU.

A CPU has no kernel for `CudnnRNNV3`, so the op is replaced by an emulator
written from cuDNN's documented GRU semantics (not from nlptool code). What
this checks is everything on nlptool's side of the op: the parameter
packing, the sequence-length / go_backwards plumbing, the runtime fallback
for masks cuDNN cannot take, the error messages, and that a SavedModel
export never contains a cuDNN op.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

import nlptool.layers  # noqa: E402
import nlptool.layers.gru as gru_module  # noqa: E402
from nlptool.layers import gru_kernels  # noqa: E402

BATCH, STEPS, DIM, UNITS = 3, 6, 5, 4
TOL = dict(rtol=1e-5, atol=1e-5)
HAS_GPU = bool(tf.config.list_logical_devices("GPU"))


# --------------------------------------------------------------------------
# cuDNN's canonical GRU layout, written independently of nlptool.
# --------------------------------------------------------------------------


def numpy_cudnn_params(kernel, recurrent_kernel, bias):
    """Keras weights -> cuDNN buffer: W_r, W_z, W_h, R_r, R_z, R_h, each
    (units, fan_in) row-major, then biases bW_r, bW_z, bW_h, bR_r, bR_z, bR_h."""

    def gates(m):
        return dict(zip("zrh", np.split(m, 3, axis=-1)))  # Keras column order z, r, h

    w, r, bw, br = gates(kernel), gates(recurrent_kernel), gates(bias[0]), gates(bias[1])
    matrices = [w[g].T for g in "rzh"] + [r[g].T for g in "rzh"]
    vectors = [bw[g] for g in "rzh"] + [br[g] for g in "rzh"]
    return np.concatenate([np.ascontiguousarray(m).ravel() for m in matrices] + vectors)


def fake_cudnn_rnn_v3(
    input,
    input_h,
    input_c,
    params,
    sequence_lengths,
    rnn_mode,
    input_mode,
    direction,
    is_training,
    time_major,
    **unused,
):
    """CPU stand-in for tf.raw_ops.CudnnRNNV3 (unidirectional GRU), in TF ops
    so that gradients flow through it."""
    assert time_major is True and rnn_mode == "gru"
    assert input_mode == "linear_input" and direction == "unidirectional"
    dim, units = input.shape[-1], input_h.shape[-1]
    pieces = tf.split(params, [units * dim] * 3 + [units * units] * 3 + [units] * 6)
    w_r, w_z, w_h = (tf.reshape(p, [units, dim]) for p in pieces[0:3])
    r_r, r_z, r_h = (tf.reshape(p, [units, units]) for p in pieces[3:6])
    bw_r, bw_z, bw_h, br_r, br_z, br_h = pieces[6:]
    # (time, batch, 1): step t of row b is processed iff t < sequence_lengths[b]
    live = tf.transpose(tf.sequence_mask(sequence_lengths, tf.shape(input)[0]))[..., None]

    def step(h, elems):
        x, live_t = elems

        def mm(a, m):
            return tf.matmul(a, m, transpose_b=True)  # m is (units, fan_in)

        r = tf.sigmoid(mm(x, w_r) + bw_r + mm(h, r_r) + br_r)
        z = tf.sigmoid(mm(x, w_z) + bw_z + mm(h, r_z) + br_z)
        h_tilde = tf.tanh(mm(x, w_h) + bw_h + r * (mm(h, r_h) + br_h))
        return tf.where(live_t, (1.0 - z) * h_tilde + z * h, h)  # freeze past the length

    states = tf.scan(step, (input, live), initializer=input_h[0])
    outputs = tf.where(live, states, tf.zeros_like(states))  # zeros beyond each length
    dummy = tf.zeros([0], input.dtype)
    return outputs, states[-1][None], tf.zeros_like(input_h), dummy, dummy


@pytest.fixture
def fake_cudnn(monkeypatch):
    """Pretend a GPU is visible and run the emulator; returns a call counter."""
    calls = {"n": 0}

    def counted(**kwargs):
        calls["n"] += 1
        return fake_cudnn_rnn_v3(**kwargs)

    monkeypatch.setattr(gru_kernels, "CUDNN_OP", counted)
    monkeypatch.setattr(gru_module, "_gpu_available", lambda: True)
    return calls


# --------------------------------------------------------------------------
# 1. Packing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dim,units", [(5, 4), (3, 3), (2, 6)])
def test_pack_params_matches_canonical_layout(dim, units):
    rng = np.random.default_rng(dim * 10 + units)
    kernel = rng.normal(size=(dim, 3 * units)).astype("float32")
    recurrent_kernel = rng.normal(size=(units, 3 * units)).astype("float32")
    bias = rng.normal(size=(2, 3 * units)).astype("float32")
    packed = gru_kernels.cudnn_pack_params(kernel, recurrent_kernel, bias).numpy()
    assert packed.shape == (3 * units * dim + 3 * units * units + 6 * units,)
    np.testing.assert_array_equal(packed, numpy_cudnn_params(kernel, recurrent_kernel, bias))


# --------------------------------------------------------------------------
# 2-3. The layer on the emulator against keras.layers.GRU
# --------------------------------------------------------------------------


def make_mask(kind):
    """(batch, time) bool mask, True where a step is valid."""
    if kind is None:
        return None
    t = np.arange(STEPS)
    rows = {
        "right": [t < 6, t < 4, t < 2],
        "left": [t >= 0, t >= 2, t >= 4],
        "empty_row": [t < 6, t < 3, t < 0],  # row 2 has no valid step
        "gap": [t >= 0, (t < 2) | (t >= 4), t >= 0],  # a hole inside row 1
    }[kind]
    return tf.constant(np.stack(rows))


def make_pair(seed=0, jit_compile=True, **kwargs):
    """(nlptool GRU on cuDNN, keras.layers.GRU) with the same random weights."""
    kwargs.setdefault("return_sequences", True)
    ours = nlptool.layers.GRU(UNITS, return_state=True, implementation="cudnn", jit_compile=jit_compile, **kwargs)
    ref = keras.layers.GRU(UNITS, return_state=True, **kwargs)
    for layer in (ours, ref):
        layer.build((None, None, DIM))
    rng = np.random.default_rng(seed)
    ref.set_weights([0.5 * rng.normal(size=w.shape).astype("float32") for w in ref.get_weights()])
    ours.set_weights(ref.get_weights())
    return ours, ref


def outputs_and_grads(layer, x, mask, h0):
    """Outputs, final state and d(loss)/d(input, initial state, each weight)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        if h0 is not None:
            tape.watch(h0)
        out, state = layer(x, initial_state=None if h0 is None else [h0], mask=mask)
        # non-uniform and non-linear, so gradients are not mere column sums
        out_weight = np.cos(np.arange(UNITS)).astype("float32")
        loss = tf.reduce_sum(out * out_weight + 0.3 * out**2)
        loss += tf.reduce_sum(state * np.linspace(-1.0, 1.0, UNITS, dtype="float32"))
    sources = [x] + ([h0] if h0 is not None else []) + list(layer.trainable_weights)
    return [out, state] + tape.gradient(loss, sources)


def assert_matches_keras(ours, ref, mask=None, with_h0=False, seed=1):
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(BATCH, STEPS, DIM)).astype("float32"))
    h0 = tf.constant(rng.normal(size=(BATCH, UNITS)).astype("float32")) if with_h0 else None
    got, want = outputs_and_grads(ours, x, mask, h0), outputs_and_grads(ref, x, mask, h0)
    names = ["output", "state", "d_input"] + (["d_h0"] if with_h0 else []) + ["d_kernel", "d_rec", "d_bias"]
    assert len(got) == len(want) == len(names)
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, err_msg=name, **TOL)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_cudnn_sequence_state_contract(fake_cudnn, go_backwards):
    # gru_kernels' contract: the full state sequence in processing order, the
    # state carried over masked steps (h0 over leading padding when reversed).
    # The layer hides masked positions, so check it here against the
    # reference path.
    rng = np.random.default_rng(2)
    x, h0 = rng.normal(size=(STEPS, BATCH, DIM)), rng.normal(size=(BATCH, UNITS))
    kernel, rec = 0.5 * rng.normal(size=(DIM, 3 * UNITS)), 0.5 * rng.normal(size=(UNITS, 3 * UNITS))
    bias = 0.5 * rng.normal(size=(2, 3 * UNITS))
    x, h0, kernel, rec, bias = (tf.constant(a, tf.float32) for a in (x, h0, kernel, rec, bias))
    lengths = tf.constant([6, 4, 2])
    hs, h_last = gru_kernels.cudnn_sequence(x, h0, kernel, rec, bias, lengths, go_backwards)
    mask = tf.transpose(make_mask("right"))[..., None]
    if go_backwards:
        x, mask = tf.reverse(x, [0]), tf.reverse(mask, [0])
    want, _ = gru_kernels.reference_sequence(
        x, kernel, bias[0], h0, rec, bias[1], mask, None, True, tf.tanh, tf.sigmoid
    )
    np.testing.assert_allclose(hs, want, **TOL)
    np.testing.assert_allclose(h_last, want[-1], **TOL)
    assert fake_cudnn["n"] == 1


@pytest.mark.parametrize("with_h0", [False, True], ids=["zero_h0", "h0"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("mask_kind", [None, "right"])
def test_cudnn_path_matches_keras(fake_cudnn, mask_kind, go_backwards, return_sequences, with_h0):
    ours, ref = make_pair(go_backwards=go_backwards, return_sequences=return_sequences)
    assert ours.resolved_implementation() == "cudnn"
    assert_matches_keras(ours, ref, make_mask(mask_kind), with_h0)
    assert fake_cudnn["n"] > 0  # the emulated op really ran


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("mask_kind", ["right", "left", "empty_row"])
def test_zero_output_for_mask_matches_keras(fake_cudnn, mask_kind, go_backwards):
    ours, ref = make_pair(go_backwards=go_backwards, zero_output_for_mask=True)
    assert_matches_keras(ours, ref, make_mask(mask_kind), with_h0=True)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("mask_kind", ["left", "empty_row", "gap"])
def test_unsupported_masks_fall_back_to_fused(fake_cudnn, mask_kind, go_backwards):
    # Called eagerly, the layer's tf.cond runs only the taken branch, so a
    # zero call count proves cuDNN was skipped for these masks.
    ours, ref = make_pair(go_backwards=go_backwards)
    assert_matches_keras(ours, ref, make_mask(mask_kind), with_h0=True)
    assert fake_cudnn["n"] == 0


# Inside a tf.function the gradient goes through the layer's tf.cond. An
# XLA-compiled backward inside a cond branch cannot be differentiated by
# TensorFlow ("Could not find external tensor capture .../cond/StopGradient"),
# so the fallback branch runs without XLA; this is what model.fit does on a
# GPU with a mask.
@pytest.mark.parametrize("jit_compile", [False, True], ids=["nojit", "jit"])
@pytest.mark.parametrize("mask_kind", ["right", "left"])
def test_graph_mode_cond_matches_keras(fake_cudnn, mask_kind, jit_compile):
    # Inside a tf.function both branches of the tf.cond are traced and the
    # gradient goes through the cond; the result must not depend on that.
    ours, ref = make_pair(go_backwards=True, jit_compile=jit_compile)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(BATCH, STEPS, DIM)).astype("float32"))
    mask = make_mask(mask_kind)
    got = tf.function(lambda x: outputs_and_grads(ours, x, mask, None))(x)
    want = outputs_and_grads(ref, x, mask, None)
    for name, g, w in zip(["output", "state", "d_input", "d_kernel", "d_rec", "d_bias"], got, want):
        np.testing.assert_allclose(g, w, err_msg=name, **TOL)
    assert fake_cudnn["n"] > 0  # traced (the cuDNN branch exists in the graph)


# --------------------------------------------------------------------------
# 4. Errors and implementation choice
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"reset_after": False}, "reset_after"),
        ({"activation": "relu"}, r"(?<!recurrent_)activation must be 'tanh'"),
        ({"recurrent_activation": "hard_sigmoid"}, "recurrent_activation"),
        ({"recurrent_dropout": 0.2}, "recurrent_dropout"),
        ({"use_bias": False}, "use_bias"),
    ],
)
def test_cudnn_rejects_unsupported_config(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nlptool.layers.GRU(4, implementation="cudnn", **kwargs)


@pytest.mark.skipif(HAS_GPU, reason="needs a machine without a GPU")
def test_cudnn_without_gpu_raises_on_call():
    layer = nlptool.layers.GRU(4, implementation="cudnn")  # construction is device-agnostic
    with pytest.raises(ValueError, match="no GPU"):
        layer(np.zeros((2, 3, 5), "float32"))


@pytest.mark.skipif(HAS_GPU, reason="needs a machine without a GPU")
def test_auto_resolution(monkeypatch):
    assert nlptool.layers.GRU(4).resolved_implementation() == "fused"
    monkeypatch.setattr(gru_module, "_gpu_available", lambda: True)
    assert nlptool.layers.GRU(4).resolved_implementation() == "cudnn"
    # with a GPU but a configuration cuDNN cannot run, auto still avoids it
    assert nlptool.layers.GRU(4, reset_after=False).resolved_implementation() == "fused"
    assert nlptool.layers.GRU(4, activation="relu").resolved_implementation() == "reference"


# --------------------------------------------------------------------------
# 5. Portability: an export never contains a cuDNN op
# --------------------------------------------------------------------------


def op_types(graph_def):
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_saved_model_never_contains_cudnn(monkeypatch, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(None, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(nlptool.layers.GRU(4, implementation="auto")(inputs)))
    module = tf.Module()
    module.model = model
    module.f = tf.function(model, input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])

    with monkeypatch.context() as patch:
        # "auto" now picks cuDNN. CUDNN_OP stays the real op (building its
        # node needs no GPU): with the emulator, a leak into the export would
        # be invisible, since the emulator is made of ordinary ops.
        patch.setattr(gru_module, "_gpu_available", lambda: True)
        # Positive control: a normal trace does contain the cuDNN op, and it
        # sits in the function cache when the export starts.
        traced = module.f.get_concrete_function()
        assert "CudnnRNNV3" in op_types(traced.graph.as_graph_def())
        tf.saved_model.save(module, str(tmp_path))

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "saved_model.pb").read_bytes())
    ops = set().union(*(op_types(mg.graph_def) for mg in saved.meta_graphs))
    assert not [op for op in ops if op.startswith("Cudnn")], ops
    assert "While" in ops or "StatelessWhile" in ops  # the recurrence is really there

    x = np.random.default_rng(4).normal(size=(2, 5, 3)).astype("float32")
    expected = model(x)  # un-patched: the fused path on this CPU
    loaded = tf.saved_model.load(str(tmp_path))  # keep a reference: it owns the variables
    np.testing.assert_allclose(loaded.f(x), expected, **TOL)
