"""`nlptool.layers.BahdanauAttention`: additive attention for encoder-decoder models."""

from collections.abc import Sequence
from typing import Any, TypeAlias

import keras
import tensorflow as tf

# Score given to masked source positions before the softmax. Scores are
# bounded by sum_k |v_k| (tanh lies in [-1, 1]), far above this value, so
# exp(_MASK_SCORE - max score) underflows to exactly 0 in float32. A finite
# value (not -inf) keeps a row with no valid position free of NaN, in the
# forward pass and in the gradients.
_MASK_SCORE = -1e9

# what keras.initializers.get takes
Initializer: TypeAlias = str | dict[str, Any] | keras.initializers.Initializer


@keras.saving.register_keras_serializable(package="nlptool")
class BahdanauAttention(keras.layers.Layer):
    """Additive attention of Bahdanau, Cho & Bengio (2014).

    For a decoder state s (the query) and encoder outputs h_1..h_S (the
    memory), with valid source positions given by a mask:

        keys_j    = W_h h_j + b                     (b only with use_bias=True)
        e_j       = v^T tanh(W_s s + keys_j)        score of source position j
        e_j       = v^T tanh(W_s s + keys_j + w_c c_j)   with coverage (See et al. 2017),
                                                    c_j the attention position j received so far
        alpha     = softmax_j(e) over the valid positions; exactly 0 elsewhere
        context   = sum_j alpha_j h_j

    The keys do not depend on the decoder state: compute them once per source
    sentence with `precompute(memory)` and pass them to every decoder step,
    so a step costs one (query_dim x units) product plus element-wise work
    over (source_len, units). A row with no valid position gets weights 0
    and context 0. The softmax runs in float32 (float64 for a float64
    policy), also under a mixed precision policy; outputs are in the
    layer's compute dtype.

    Weights, in `get_weights()` order: `query_kernel` W_s (query_dim, units),
    `memory_kernel` W_h (memory_dim, units), `score_vector` v (units,),
    with `use_bias=True`, `bias` b (units,), and with `coverage=True`,
    `coverage_kernel` w_c (units,), initialised to zeros (so that a model
    starts as one without coverage).

    The layer is built from the shapes of its first call, or explicitly with
    `build(query_shape, memory_shape)`; `precompute` needs a built layer.
    Inside `tf.while_loop` (a decoder loop, beam search) the layer must be
    built before the loop, as variables cannot be created inside it.

    Args:
        units: positive integer, size of the hidden layer of the score.
        use_bias: whether the score has the bias b inside the tanh.
        kernel_initializer: initializer of W_s, W_h and v.
        bias_initializer: initializer of b.
        coverage: whether the score has the coverage term w_c c_j.

    Call arguments:
        query: (batch, query_dim), one decoder state per row; or
            (batch, T, query_dim), T decoder states attended independently.
        memory: (batch, source_len, memory_dim), the encoder outputs.
        keys: optional (batch, source_len, units), the result of
            `precompute(memory)`; computed here when None.
        mask: optional bool (batch, source_len), True at valid positions.
            Not taken from Keras mask metadata: pass it explicitly.
        coverage: with `coverage=True`, (batch, source_len) for a 2-D query
            or (batch, T, source_len) for a 3-D one: the attention each
            source position received at earlier steps (zeros at the first).

    Returns:
        `(context, weights)`: context (batch, memory_dim) and weights
        (batch, source_len) for a 2-D query; (batch, T, memory_dim) and
        (batch, T, source_len) for a 3-D query. The outputs carry no Keras
        mask.

    Example:

    >>> import numpy as np
    >>> attention = BahdanauAttention(8)
    >>> attention.build(query_shape=(None, 6), memory_shape=(None, None, 5))
    >>> memory = np.random.default_rng(0).normal(size=(2, 4, 5)).astype("float32")
    >>> mask = np.array([[True, True, True, False], [False, True, True, False]])
    >>> keys = attention.precompute(memory)   # once per source sentence
    >>> state = np.ones((2, 6), "float32")    # decoder state s_{t-1}
    >>> context, weights = attention(state, memory, keys=keys, mask=mask)
    >>> tuple(context.shape), tuple(weights.shape)
    ((2, 5), (2, 4))
    >>> np.allclose(weights.numpy().sum(axis=-1), 1.0), bool((weights.numpy()[~mask] == 0.0).all())
    (True, True)
    """

    def __init__(
        self,
        units: int,
        use_bias: bool = True,
        kernel_initializer: Initializer = "glorot_uniform",
        bias_initializer: Initializer = "zeros",
        coverage: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer, got {units!r}."
            )
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.coverage = bool(coverage)

    # === Weights ===

    def build(self, query_shape: Sequence[int | None], memory_shape: Sequence[int | None]) -> None:
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if query_dim is None or memory_dim is None:
            raise ValueError(
                "The last dimensions of the query and the memory of `BahdanauAttention` must be defined, "
                f"got query shape {tuple(query_shape)} and memory shape {tuple(memory_shape)}."
            )
        self.query_kernel = self.add_weight(
            shape=(query_dim, self.units), name="query_kernel", initializer=self.kernel_initializer
        )
        self.memory_kernel = self.add_weight(
            shape=(memory_dim, self.units), name="memory_kernel", initializer=self.kernel_initializer
        )
        self.score_vector = self.add_weight(
            shape=(self.units,), name="score_vector", initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), name="bias", initializer=self.bias_initializer)
        else:
            self.bias = None
        self.coverage_kernel = None
        if self.coverage:
            self.coverage_kernel = self.add_weight(shape=(self.units,), name="coverage_kernel", initializer="zeros")

    # === Forward pass ===

    def precompute(self, memory: tf.Tensor) -> tf.Tensor:
        """The keys W_h h_j + b of every source position: (batch, source_len, units).

        Call once per source sentence and pass the result as `keys` to each
        decoder step. The layer must be built (by a call or by `build`).
        """
        if not self.built:
            raise ValueError(
                f"`BahdanauAttention` layer '{self.name}' is not built: call it once or call "
                "`build(query_shape, memory_shape)` before `precompute`."
            )
        dtype = self.compute_dtype
        memory = tf.cast(memory, dtype)
        keys = tf.tensordot(memory, tf.cast(self.memory_kernel, dtype), axes=1)
        if self.use_bias:
            keys = keys + tf.cast(self.bias, dtype)
        return keys

    def call(
        self,
        query: tf.Tensor,
        memory: tf.Tensor,
        keys: tf.Tensor | None = None,
        mask: tf.Tensor | None = None,
        coverage: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        dtype = self.compute_dtype
        query = tf.cast(query, dtype)
        memory = tf.cast(memory, dtype)
        keys = self.precompute(memory) if keys is None else tf.cast(keys, dtype)
        query_kernel = tf.cast(self.query_kernel, dtype)

        single_step = query.shape.rank == 2
        if single_step:
            processed = tf.matmul(query, query_kernel)[:, None, :]  # (batch, 1, units)
        elif query.shape.rank == 3:
            processed = tf.tensordot(query, query_kernel, axes=1)  # (batch, T, units)
        else:
            raise ValueError(f"The query of `BahdanauAttention` must have rank 2 or 3, got shape {tuple(query.shape)}.")

        # (batch, T, 1, units) + (batch, 1, source_len, units)
        features = processed[:, :, None, :] + keys[:, None, :, :]
        if self.coverage:
            if coverage is None:
                raise ValueError(f"`BahdanauAttention` layer '{self.name}' has coverage=True: pass `coverage`.")
            coverage = tf.cast(coverage, dtype)
            if single_step:
                coverage = coverage[:, None, :]
            features += coverage[..., None] * tf.cast(self.coverage_kernel, dtype)
        elif coverage is not None:
            raise ValueError(f"`BahdanauAttention` layer '{self.name}' was built without coverage; got `coverage`.")
        features = tf.tanh(features)
        # v^T as an element-wise product and sum: tf.linalg.matvec here would
        # be a broadcasting BatchMatMulV2, which crashes intermittently with
        # the oneDNN CPU kernels of TF 2.21.
        scores = tf.reduce_sum(features * tf.cast(self.score_vector, dtype), axis=-1)  # (batch, T, source_len)
        weights = self._masked_softmax(scores, mask)
        context = tf.matmul(tf.cast(weights, dtype), memory)  # (batch, T, memory_dim)
        weights = tf.cast(weights, dtype)
        if single_step:
            return context[:, 0], weights[:, 0]
        return context, weights

    def _masked_softmax(self, scores, mask):
        """Softmax over the last axis in float32 (float64 for float64 scores),
        exactly 0 at masked positions, and all 0 for a row with none valid."""
        softmax_dtype = tf.float64 if scores.dtype == tf.float64 else tf.float32
        scores = tf.cast(scores, softmax_dtype)
        if mask is None:
            return tf.nn.softmax(scores, axis=-1)
        valid = tf.cast(mask, tf.bool)[:, None, :]  # broadcast over the query steps
        scores = tf.where(valid, scores, tf.constant(_MASK_SCORE, softmax_dtype))
        # The product only matters for rows with no valid position, whose
        # softmax is uniform; elsewhere masked weights are already exactly 0.
        return tf.nn.softmax(scores, axis=-1) * tf.cast(valid, softmax_dtype)

    # === Keras plumbing ===

    def compute_output_shape(
        self, query_shape: Sequence[int | None], memory_shape: Sequence[int | None]
    ) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
        source_len, memory_dim = memory_shape[1], memory_shape[2]
        if len(query_shape) == 2:
            return (query_shape[0], memory_dim), (query_shape[0], source_len)
        batch, steps = query_shape[0], query_shape[1]
        return (batch, steps, memory_dim), (batch, steps, source_len)

    def compute_mask(self, query: Any, mask: tf.Tensor | None = None) -> None:
        # The mask describes source positions, which the outputs no longer have.
        return None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "coverage": self.coverage,
            }
        )
        return config
