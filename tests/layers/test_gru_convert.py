"""Exact conversion between nlptool/Keras GRU weights and torch.nn.GRU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from nlptool.layers import GRU
from nlptool.layers.gru_convert import from_torch_state_dict, to_torch_state_dict

B, T, D, H = 2, 5, 3, 4


def numpy_torch_gru(x, state, suffix="l0", reverse=False):
    """PyTorch's documented GRU equations (gate order r, z, n), batch first."""

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    w_ih, w_hh = state[f"weight_ih_{suffix}"], state[f"weight_hh_{suffix}"]
    b_ih, b_hh = state[f"bias_ih_{suffix}"], state[f"bias_hh_{suffix}"]
    h = np.zeros((x.shape[0], H), np.float64)
    outputs = np.zeros((x.shape[0], x.shape[1], H))
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in steps:
        gi = x[:, t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])  # b_hn inside the reset product
        h = (1 - z) * n + z * h
        outputs[:, t] = h
    return outputs, h


def random_torch_state(bidirectional=False, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for suffix in ["l0"] + (["l0_reverse"] if bidirectional else []):
        state[f"weight_ih_{suffix}"] = rng.normal(size=(3 * H, D)).astype("float32") * 0.5
        state[f"weight_hh_{suffix}"] = rng.normal(size=(3 * H, H)).astype("float32") * 0.5
        state[f"bias_ih_{suffix}"] = rng.normal(size=(3 * H,)).astype("float32") * 0.5
        state[f"bias_hh_{suffix}"] = rng.normal(size=(3 * H,)).astype("float32") * 0.5
    return state


X = np.random.default_rng(42).normal(size=(B, T, D)).astype("float32")


def test_from_torch_state_dict_matches_torch_equations():
    state = random_torch_state()
    layer = GRU(H, return_sequences=True)
    layer.build((None, T, D))
    from_torch_state_dict(layer, state)
    expected, _ = numpy_torch_gru(X.astype(np.float64), state)
    np.testing.assert_allclose(layer(X), expected, atol=1e-5)


def test_round_trip_is_exact_both_ways():
    state = random_torch_state(seed=1)
    layer = GRU(H)
    layer.build((None, T, D))
    from_torch_state_dict(layer, state)
    back = to_torch_state_dict(layer)
    assert set(back) == set(state)
    for key in state:
        np.testing.assert_array_equal(back[key], state[key])  # a permutation: bit-exact


def test_keras_gru_to_torch_matches_torch_equations():
    layer = keras.layers.GRU(H, return_sequences=True)
    layer.build((None, T, D))
    layer.set_weights([w + 0.1 for w in layer.get_weights()])  # nonzero biases
    state = to_torch_state_dict(layer)
    expected, _ = numpy_torch_gru(X.astype(np.float64), state)
    np.testing.assert_allclose(layer(X), expected, atol=1e-5)


def test_bidirectional_from_torch():
    state = random_torch_state(bidirectional=True, seed=2)
    layer = keras.layers.Bidirectional(GRU(H, return_sequences=True))
    layer.build((None, T, D))
    from_torch_state_dict(layer, state)
    forward, _ = numpy_torch_gru(X.astype(np.float64), state, "l0")
    backward, _ = numpy_torch_gru(X.astype(np.float64), state, "l0_reverse", reverse=True)
    np.testing.assert_allclose(layer(X), np.concatenate([forward, backward], axis=-1), atol=1e-5)


def test_unconvertible_layers_and_bad_dicts_are_named():
    layer = GRU(H, reset_after=False)
    layer.build((None, T, D))
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch_state_dict(layer)
    good = GRU(H)
    good.build((None, T, D))
    state = random_torch_state()
    with pytest.raises(ValueError, match="no entry 'weight_ih_l1'"):
        from_torch_state_dict(good, state, layer_index=1)
    wrong = GRU(H)
    wrong.build((None, T, D + 1))
    with pytest.raises(ValueError, match="do not fit layer"):
        from_torch_state_dict(wrong, state)


@pytest.mark.torch
@pytest.mark.parametrize("bidirectional", [False, True])
def test_against_torch_itself(bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.GRU(D, H, batch_first=True, bidirectional=bidirectional)
    inner = GRU(H, return_sequences=True, return_state=True)
    layer = keras.layers.Bidirectional(inner) if bidirectional else inner
    layer.build((None, T, D))
    from_torch_state_dict(layer, reference.state_dict())
    with torch.no_grad():
        expected, expected_h = reference(torch.from_numpy(X))
    got = layer(X)
    np.testing.assert_allclose(got[0], expected.numpy(), atol=1e-5)
    for i, h in enumerate(got[1:]):
        np.testing.assert_allclose(h, expected_h[i].numpy(), atol=1e-5)
    # and back: our weights into a fresh torch GRU reproduce our outputs
    fresh = torch.nn.GRU(D, H, batch_first=True, bidirectional=bidirectional)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(layer).items()})
    with torch.no_grad():
        again, _ = fresh(torch.from_numpy(X))
    np.testing.assert_allclose(again.numpy(), got[0], atol=1e-5)
