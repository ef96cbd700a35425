"""Exact weight conversion between Keras-layout GRUs and `torch.nn.GRU`.

PyTorch stores, per layer `k` (and `_reverse` for the backward direction):
`weight_ih_l{k}` (3H, D), `weight_hh_l{k}` (3H, H), `bias_ih_l{k}` (3H,) and
`bias_hh_l{k}` (3H,), with gates stacked in the order r, z, n and equations

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

which is Keras's `reset_after=True` form with the same meaning of z. Keras
stores (D, 3H) and (H, 3H) column blocks in the order z, r, h and a (2, 3H)
bias (input row, recurrent row). Conversion is a permutation and a
transpose, so it is exact in both directions.

Works on `nlptool.layers.GRU`, `keras.layers.GRU` and `keras.layers.Bidirectional`
around either; state dicts may hold torch tensors or NumPy arrays.
"""

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

_KERAS_TO_TORCH = [1, 0, 2]  # torch block i holds Keras gate _KERAS_TO_TORCH[i]


def _reorder(blocks_last_axis, order):
    parts = np.split(blocks_last_axis, 3, axis=-1)
    return np.concatenate([parts[i] for i in order], axis=-1)


def _directions(layer):
    if isinstance(layer, keras.layers.Bidirectional):
        return [(layer.forward_layer, ""), (layer.backward_layer, "_reverse")]
    return [(layer, "")]


def _check_convertible(gru):
    reset_after = getattr(gru, "reset_after", None)
    if reset_after is None:  # keras.layers.GRU keeps it on its cell
        reset_after = gru.cell.reset_after
    use_bias = gru.use_bias
    if not reset_after or not use_bias:
        raise ValueError(
            f"Layer {gru.name!r} cannot be converted to torch.nn.GRU: torch's GRU "
            "has reset_after=True and use_bias=True; got "
            f"reset_after={reset_after}, use_bias={use_bias}."
        )


def _as_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def to_torch_state_dict(layer: keras.layers.Layer, layer_index: int = 0) -> dict[str, np.ndarray]:
    """The `torch.nn.GRU` state dict entries for `layer` as NumPy arrays.

    For a stacked torch GRU, convert each Keras layer with its `layer_index`
    and merge the dicts. Wrap in `torch.from_numpy` before `load_state_dict`.
    """
    state: dict[str, np.ndarray] = {}
    for gru, suffix in _directions(layer):
        _check_convertible(gru)
        kernel, recurrent_kernel, bias = gru.get_weights()
        name = f"l{layer_index}{suffix}"
        state[f"weight_ih_{name}"] = _reorder(kernel, _KERAS_TO_TORCH).T.copy()
        state[f"weight_hh_{name}"] = _reorder(recurrent_kernel, _KERAS_TO_TORCH).T.copy()
        state[f"bias_ih_{name}"] = _reorder(bias[0], _KERAS_TO_TORCH)
        state[f"bias_hh_{name}"] = _reorder(bias[1], _KERAS_TO_TORCH)
    return state


def from_torch_state_dict(layer: keras.layers.Layer, state_dict: Mapping[str, Any], layer_index: int = 0) -> None:
    """Set `layer`'s weights from a `torch.nn.GRU` state dict.

    `layer` must be built with the matching input size. Raises a ValueError
    naming the missing key or the mismatching shape.
    """
    for gru, suffix in _directions(layer):
        _check_convertible(gru)
        name = f"l{layer_index}{suffix}"
        arrays = {}
        for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            full = f"{key}_{name}"
            if full not in state_dict:
                raise ValueError(f"The state dict has no entry {full!r}; it holds {sorted(state_dict)}.")
            arrays[key] = _as_numpy(state_dict[full])
        kernel = _reorder(arrays["weight_ih"].T, _KERAS_TO_TORCH)  # the permutation is its own inverse
        recurrent_kernel = _reorder(arrays["weight_hh"].T, _KERAS_TO_TORCH)
        bias = np.stack([_reorder(arrays["bias_ih"], _KERAS_TO_TORCH), _reorder(arrays["bias_hh"], _KERAS_TO_TORCH)])
        expected = [tuple(w.shape) for w in gru.weights[:3]]
        got = [kernel.shape, recurrent_kernel.shape, bias.shape]
        if expected != got:
            raise ValueError(
                f"Shapes of torch GRU {name!r} do not fit layer {gru.name!r}: "
                f"expected Keras shapes {expected}, got {got}."
            )
        gru.set_weights([kernel, recurrent_kernel, bias])
