"""`nlptool.layers.GRU`: a Keras GRU layer with a fast CPU path and cuDNN."""

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

import keras
import tensorflow as tf

from nlptool import compat
from nlptool.layers import gru_kernels

IMPLEMENTATIONS = ("auto", "cudnn", "fused", "reference")
_FUSED_ACTIVATIONS = {"tanh": "tanh", "sigmoid": "sigmoid"}

# what keras.activations.get, keras.initializers.get, keras.regularizers.get and keras.constraints.get take
Activation: TypeAlias = str | Callable[..., Any] | None
Initializer: TypeAlias = str | dict[str, Any] | keras.initializers.Initializer
Regularizer: TypeAlias = str | dict[str, Any] | keras.regularizers.Regularizer | None
Constraint: TypeAlias = str | dict[str, Any] | keras.constraints.Constraint | None
Shape: TypeAlias = Sequence[int | None]


def _activation_name(fn):
    return keras.activations.serialize(fn) if not isinstance(fn, str) else fn


def _gpu_available():
    return bool(tf.config.list_logical_devices("GPU"))


def _in_save_context():
    # Exported graphs must run on any device, so tracing for a SavedModel
    # never picks cuDNN (whose op has no CPU kernel) nor XLA.
    return compat.in_save_context()


@keras.saving.register_keras_serializable(package="nlptool")
class GRU(keras.layers.Layer):
    """Gated recurrent unit layer, weight-compatible with `keras.layers.GRU`.

    Equations (Cho et al. 2014 gates, `reset_after=True`, the cuDNN form),
    for input x_t and previous state h:

        z  = sigmoid(x W_z + b_z + h U_z + c_z)          update gate
        r  = sigmoid(x W_r + b_r + h U_r + c_r)          reset gate
        h~ = tanh(x W_h + b_h + r * (h U_h + c_h))       candidate
        h_t = z * h + (1 - z) * h~

    Here z is the weight of the *old* state, as in Keras, cuDNN and
    PyTorch. The textbook form h_t = (1 - z') * h + z' * h~ uses z' = 1 - z.
    With `reset_after=False` (the original Cho et al. 2014 form) the reset
    gate multiplies the state before the recurrent product:
    h~ = tanh(x W_h + b_h + (r * h) U_h), and there is no recurrent bias.

    Weights are `kernel` (input_dim, 3*units), `recurrent_kernel`
    (units, 3*units), both in gate order [z, r, h], and `bias` of shape
    (2, 3*units) (input row, recurrent row) for `reset_after=True` or
    (3*units,) otherwise: exactly the variables of `keras.layers.GRU`, so
    `set_weights(keras_gru.get_weights())` works both ways. Conversions to
    and from `torch.nn.GRU` live in `nlptool.layers.gru_convert`.

    Implementations, chosen per call by `implementation`:
    - `"cudnn"`: `CudnnRNNV3` on a GPU. Needs tanh/sigmoid, a bias,
      `reset_after=True`, no recurrent dropout and float16/float32. Masks
      must be right padded with no empty row; other masks are detected at
      run time and take the fused path instead.
    - `"fused"`: the input projection for all steps in one GEMM, the
      recurrence in a loop (XLA-compiled with `jit_compile=True`), and a
      hand-written backward pass whose weight gradients are single GEMMs.
      Needs tanh/sigmoid activations.
    - `"reference"`: a readable step-by-step loop with automatic
      differentiation; any activations.
    - `"auto"` (default): cuDNN when a GPU is visible and its conditions
      hold, else fused when the activations allow it, else reference.
    The choice is made when a graph is traced and is never frozen into an
    exported SavedModel: tracing for `tf.saved_model.save` always uses the
    fused path without XLA, which runs on any device with core TF ops.

    Masks may have any pattern (right or left padding, gaps, fully masked
    rows). The state is carried unchanged over masked steps. Outputs at
    masked steps follow `keras.layers.GRU`: the last output is repeated
    (zeros before the first valid step), or zeros when
    `zero_output_for_mask=True` (which `keras.layers.Bidirectional` sets).

    Why these defaults: tanh/sigmoid, a bias and `reset_after=True` are the
    configuration that cuDNN, Keras and PyTorch share, so weights move
    between them unchanged and a GPU runs the fast kernel. XLA is on for the
    fused path because it fuses each step's element-wise gate arithmetic,
    which otherwise dominates the per-step cost on a CPU.

    Args:
        units: positive integer, dimensionality of the state.
        activation: activation of the candidate. Default "tanh".
        recurrent_activation: activation of the gates. Default "sigmoid".
        use_bias: whether the layer has biases.
        kernel_initializer: as in `keras.layers.GRU`.
        recurrent_initializer: as in `keras.layers.GRU`.
        bias_initializer: as in `keras.layers.GRU`.
        kernel_regularizer: as in `keras.layers.GRU`.
        recurrent_regularizer: as in `keras.layers.GRU`.
        bias_regularizer: as in `keras.layers.GRU`.
        kernel_constraint: as in `keras.layers.GRU`.
        recurrent_constraint: as in `keras.layers.GRU`.
        bias_constraint: as in `keras.layers.GRU`.
        dropout: fraction of input units dropped, one mask per sequence.
        recurrent_dropout: fraction of state units dropped where the state
            enters the recurrent product, one mask per sequence. Not on cuDNN.
        seed: seed of the dropout masks.
        return_sequences: return the output at every step, else the last.
        return_state: also return the final state.
        go_backwards: process the sequence in reverse; returned sequences
            are in processing (reversed) order, as in Keras.
        stateful: carry the final state of each batch into the next; needs
            a fixed batch size. `reset_state()` zeroes it.
        reset_after: apply the reset gate after the recurrent product.
        zero_output_for_mask: zeros instead of the last output at masked steps.
        implementation: "auto", "cudnn", "fused" or "reference".
        jit_compile: XLA-compile the fused path's loops. Default True.

    Call arguments:
        sequences: float tensor (batch, time, features).
        initial_state: optional (batch, units) tensor or a list of one.
        mask: optional bool tensor (batch, time), True where a step is valid.
        training: whether dropout applies.

    Example:

    >>> import numpy as np
    >>> layer = GRU(4, return_sequences=True, return_state=True)
    >>> outputs, state = layer(np.ones((2, 3, 5), "float32"))
    >>> tuple(outputs.shape), tuple(state.shape)
    ((2, 3, 4), (2, 4))
    """

    def __init__(
        self,
        units: int,
        activation: Activation = "tanh",
        recurrent_activation: Activation = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Initializer = "glorot_uniform",
        recurrent_initializer: Initializer = "orthogonal",
        bias_initializer: Initializer = "zeros",
        kernel_regularizer: Regularizer = None,
        recurrent_regularizer: Regularizer = None,
        bias_regularizer: Regularizer = None,
        activity_regularizer: Regularizer = None,
        kernel_constraint: Constraint = None,
        recurrent_constraint: Constraint = None,
        bias_constraint: Constraint = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        reset_after: bool = True,
        zero_output_for_mask: bool = False,
        implementation: Literal["auto", "cudnn", "fused", "reference"] = "auto",
        jit_compile: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                f"Received an invalid value for argument `units`, expected a positive integer, got {units!r}."
            )
        for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, expected a float in [0, 1), got {value!r}."
                )
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                "Received an invalid value for argument `implementation`, "
                f"expected one of {IMPLEMENTATIONS}, got {implementation!r}."
            )
        self.units = units
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.reset_after = reset_after
        self.zero_output_for_mask = zero_output_for_mask
        self.implementation = implementation
        self.jit_compile = jit_compile
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.states: list[Any] | None = None  # [the state variable] of a stateful layer, once built
        if implementation == "cudnn":
            failed = self.cudnn_unmet_conditions(check_device=False)
            if failed:
                raise ValueError(
                    f"implementation='cudnn' was requested but cuDNN cannot run this layer: {'; '.join(failed)}."
                )
        if implementation == "fused" and self._fused_unmet_conditions():
            raise ValueError(
                "implementation='fused' was requested but the fused path "
                f"cannot run this layer: {'; '.join(self._fused_unmet_conditions())}."
            )

    # === Weights ===

    @property
    def state_size(self) -> int:
        return self.units

    def build(self, sequences_shape: Shape, initial_state_shape: Shape | None = None) -> None:
        input_dim = sequences_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"The last dimension of the inputs to `GRU` must be defined, got input shape {tuple(sequences_shape)}."
            )
        self.kernel = self.add_weight(
            shape=(input_dim, 3 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 3 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            # separate biases for input and recurrent kernels, as cuDNN expects
            bias_shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
            self.bias = self.add_weight(
                shape=bias_shape,
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        if self.stateful:
            if sequences_shape[0] is None:
                raise ValueError(
                    "A stateful `GRU` needs a fixed batch size; got input shape "
                    f"{tuple(sequences_shape)}. Pass `batch_shape` to `keras.Input`."
                )
            self._create_state_variable(sequences_shape[0])

    @compat.no_automatic_tracking()
    def _create_state_variable(self, batch_size):
        # kept out of `weights`, as in keras.layers.GRU, so that weight lists match
        self.states = [
            keras.Variable(
                tf.zeros((batch_size, self.units)),
                trainable=False,
                dtype=self.variable_dtype,
                name="gru_state",
            )
        ]

    def reset_state(self) -> None:
        if self.states is not None:
            for v in self.states:
                v.assign(tf.zeros_like(v))

    reset_states = reset_state  # the Keras 2 spelling

    # === Choosing an implementation ===

    def cudnn_unmet_conditions(self, check_device: bool = True) -> list[str]:
        """The reasons cuDNN cannot run this layer (empty when it can)."""
        failed = []
        if _activation_name(self.activation) != "tanh":
            failed.append(f"activation must be 'tanh', got {_activation_name(self.activation)!r}")
        if _activation_name(self.recurrent_activation) != "sigmoid":
            failed.append(
                f"recurrent_activation must be 'sigmoid', got {_activation_name(self.recurrent_activation)!r}"
            )
        if not self.use_bias:
            failed.append("use_bias must be True")
        if not self.reset_after:
            failed.append("reset_after must be True")
        if self.recurrent_dropout:
            failed.append(f"recurrent_dropout must be 0, got {self.recurrent_dropout}")
        if self.dtype_policy.compute_dtype not in ("float16", "float32"):
            failed.append(f"compute dtype must be float16 or float32, got {self.dtype_policy.compute_dtype}")
        if check_device and not _gpu_available():
            failed.append("no GPU is visible")
        return failed

    def _fused_unmet_conditions(self):
        failed = []
        for arg, fn, want in (
            ("activation", self.activation, "tanh"),
            ("recurrent_activation", self.recurrent_activation, "sigmoid"),
        ):
            if _activation_name(fn) != want:
                failed.append(f"{arg} must be {want!r}, got {_activation_name(fn)!r}")
        return failed

    def resolved_implementation(self) -> str:
        """The implementation a call traced now would use."""
        if _in_save_context():
            return "reference" if self._fused_unmet_conditions() else "fused"
        if self.implementation == "cudnn":
            failed = self.cudnn_unmet_conditions()
            if failed:
                raise ValueError(
                    f"implementation='cudnn' was requested but cuDNN cannot run this layer: {'; '.join(failed)}."
                )
            return "cudnn"
        if self.implementation != "auto":
            return self.implementation
        if not self.cudnn_unmet_conditions():
            return "cudnn"
        return "reference" if self._fused_unmet_conditions() else "fused"

    # === Forward pass ===

    def _weights_for(self, dtype):
        kernel = tf.cast(self.kernel, dtype)
        recurrent_kernel = tf.cast(self.recurrent_kernel, dtype)
        if not self.use_bias:
            return kernel, recurrent_kernel, None, None
        bias = tf.cast(self.bias, dtype)
        if self.reset_after:
            return kernel, recurrent_kernel, bias[0], bias[1]
        return kernel, recurrent_kernel, bias, None

    def _prepare(self, sequences, initial_state, mask, training):
        """Time-major inputs, state, mask and dropout masks, all in float32
        or float64 (half precision policies compute the recurrence in float32)."""
        dtype = tf.float64 if sequences.dtype == tf.float64 else tf.float32
        x = tf.cast(sequences, dtype)
        batch = tf.shape(x)[0]
        if initial_state is None:
            if self.stateful:
                h0 = tf.cast(self.states[0], dtype)
            else:
                h0 = tf.zeros(tf.stack([batch, self.units]), dtype)
        else:
            if isinstance(initial_state, (list, tuple)):
                initial_state = initial_state[0]
            h0 = tf.cast(initial_state, dtype)
        if training and self.dropout:
            keep = keras.random.dropout(tf.ones_like(x[:, 0, :]), self.dropout, seed=self.seed_generator)
            x = x * keep[:, None, :]
        rec_mask = None
        if training and self.recurrent_dropout:
            rec_mask = keras.random.dropout(tf.ones_like(h0), self.recurrent_dropout, seed=self.seed_generator)
        x = tf.transpose(x, [1, 0, 2])  # (time, batch, features)
        if mask is not None:
            if isinstance(mask, (list, tuple)):
                mask = mask[0]
            mask = tf.transpose(tf.cast(mask, tf.bool))[..., None]  # (time, batch, 1)
        return x, h0, mask, rec_mask

    def _state_sequence(self, x, h0, mask, rec_mask, implementation, training=False):
        """(hs, processing-order mask) for time-major x in original order."""
        kernel, recurrent_kernel, in_bias, rec_bias = self._weights_for(x.dtype)
        original_x, original_mask = x, mask
        if self.go_backwards:
            x = tf.reverse(x, [0])
            mask = None if mask is None else tf.reverse(mask, [0])

        def fused(jit_compile=self.jit_compile):
            return gru_kernels.fused_sequence(
                x,
                kernel,
                in_bias,
                h0,
                recurrent_kernel,
                rec_bias,
                mask,
                rec_mask,
                self.reset_after,
                jit_compile=jit_compile and not _in_save_context(),
                keep_products=bool(training),
            )

        if implementation == "reference":
            hs, _ = gru_kernels.reference_sequence(
                x,
                kernel,
                in_bias,
                h0,
                recurrent_kernel,
                rec_bias,
                mask,
                rec_mask,
                self.reset_after,
                self.activation,
                self.recurrent_activation,
            )
            return hs, mask
        if implementation == "fused":
            return fused(), mask

        steps, batch = tf.shape(x)[0], tf.shape(x)[1]

        def cudnn():
            lengths = (
                tf.fill([batch], steps)
                if original_mask is None
                else tf.reduce_sum(tf.cast(original_mask[..., 0], tf.int32), axis=0)
            )
            weights = [tf.cast(w, self.compute_dtype) for w in (self.kernel, self.recurrent_kernel, self.bias)]
            hs, _ = gru_kernels.cudnn_sequence(
                tf.cast(original_x, self.compute_dtype),
                tf.cast(h0, self.compute_dtype),
                *weights,
                lengths,
                self.go_backwards,
            )
            return tf.cast(hs, x.dtype)

        if original_mask is None:
            return cudnn(), mask
        # cuDNN handles right padding through sequence lengths; any other
        # pattern, or a row with no valid step, runs on the fused path.
        valid = original_mask[..., 0]
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=0)
        right_padded = tf.reduce_all(tf.equal(valid, tf.transpose(tf.sequence_mask(lengths, steps))))
        cudnn_ok = tf.logical_and(right_padded, tf.reduce_all(lengths > 0))
        # No XLA in the fallback: TensorFlow cannot differentiate through an
        # XLA-compiled gradient function inside a tf.cond branch.
        return tf.cond(cudnn_ok, cudnn, lambda: fused(jit_compile=False)), mask

    def call(
        self,
        sequences: tf.Tensor,
        initial_state: tf.Tensor | Sequence[tf.Tensor] | None = None,
        mask: tf.Tensor | Sequence[tf.Tensor] | None = None,
        training: bool | None = False,
    ) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        implementation = self.resolved_implementation()
        x, h0, mask_tm, rec_mask = self._prepare(sequences, initial_state, mask, training)
        hs, mask_tm = self._state_sequence(x, h0, mask_tm, rec_mask, implementation, training)
        final_state = hs[-1]
        if mask_tm is None:
            outputs = hs
        elif self.zero_output_for_mask:
            outputs = tf.where(mask_tm, hs, tf.zeros_like(hs))
        else:
            # Keras repeats the last output over masked steps, and outputs
            # zeros before the first valid step of a row.
            seen = tf.cumsum(tf.cast(mask_tm, tf.int32), axis=0) > 0
            outputs = tf.where(seen, hs, tf.zeros_like(hs))
        if self.stateful:
            # build() gave a stateful layer its list of states; mypy cannot tie `states` to `stateful`
            self.states[0].assign(tf.cast(final_state, self.states[0].dtype))  # type: ignore[index]
        if self.return_sequences:
            output = tf.transpose(outputs, [1, 0, 2])
        else:
            output = outputs[-1]
        output = tf.cast(output, self.compute_dtype)
        if self.return_state:
            return output, tf.cast(final_state, self.compute_dtype)
        return output

    def step(self, inputs: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
        """One time step: `inputs` (batch, features) and `state` (batch,
        units) -> the new state (batch, units), with this layer's weights.

        For decoders that feed each output back as the next input (sampling,
        beam search, attention decoders): it runs anywhere a tf.function
        does, with no XLA and no cuDNN, so exported decoders stay portable.
        Dropout does not apply; go_backwards has no meaning for one step.
        """
        dtype = tf.float64 if inputs.dtype == tf.float64 else tf.float32
        kernel, recurrent_kernel, in_bias, rec_bias = self._weights_for(dtype)
        xp = tf.matmul(tf.cast(inputs, dtype), kernel)
        if in_bias is not None:
            xp = xp + in_bias
        h, _, _, _ = gru_kernels.reference_step(
            xp,
            tf.cast(state, dtype),
            recurrent_kernel,
            rec_bias,
            self.reset_after,
            self.activation,
            self.recurrent_activation,
        )
        return tf.cast(h, self.compute_dtype)

    def gate_activations(
        self,
        sequences: Any,
        mask: tf.Tensor | None = None,
        initial_state: tf.Tensor | Sequence[tf.Tensor] | None = None,
    ) -> dict[str, tf.Tensor]:
        """Per-step gate values for plots, computed by the reference path.

        Returns a dict of (batch, time, units) NumPy-convertible tensors:
        `z` (update gate, weight of the old state), `r` (reset gate),
        `candidate` (h~) and `state` (h_t). Steps are in processing order
        (reversed when `go_backwards`); gates are zero at masked steps.
        """
        sequences = tf.convert_to_tensor(sequences)
        if not self.built:
            self.build(sequences.shape)
        x, h0, mask_tm, _ = self._prepare(sequences, initial_state, mask, training=False)
        kernel, recurrent_kernel, in_bias, rec_bias = self._weights_for(x.dtype)
        if self.go_backwards:
            x = tf.reverse(x, [0])
            mask_tm = None if mask_tm is None else tf.reverse(mask_tm, [0])
        hs, gates = gru_kernels.reference_sequence(
            x,
            kernel,
            in_bias,
            h0,
            recurrent_kernel,
            rec_bias,
            mask_tm,
            None,
            self.reset_after,
            self.activation,
            self.recurrent_activation,
        )
        gates["state"] = hs
        return {k: tf.transpose(v, [1, 0, 2]) for k, v in gates.items()}

    # === Keras plumbing ===

    def compute_output_shape(
        self, sequences_shape: Shape, initial_state_shape: Shape | None = None
    ) -> tuple[int | None, ...] | tuple[tuple[int | None, ...], tuple[int | None, ...]]:
        batch, steps = sequences_shape[0], sequences_shape[1]
        output_shape = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return output_shape, (batch, self.units)
        return output_shape

    def compute_mask(
        self, _: Any, mask: tf.Tensor | Sequence[tf.Tensor] | None = None
    ) -> tf.Tensor | list[tf.Tensor | None] | None:
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None]
        return output_mask

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "recurrent_constraint": keras.constraints.serialize(self.recurrent_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "reset_after": self.reset_after,
                "zero_output_for_mask": self.zero_output_for_mask,
                "implementation": self.implementation,
                "jit_compile": self.jit_compile,
            }
        )
        return config
