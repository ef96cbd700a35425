"""Every private Keras, TensorFlow and TensorFlow Text API nlptool uses, in one place.

nlptool reaches past the public APIs of Keras and TensorFlow in a few places
where no public API does the job. Those uses live here and nowhere else, so
that an upgrade that removes or renames one of them breaks one module, and
`tests/test_compat.py` says which function broke and which private symbol it
relied on. The versions these entries were written against are pinned in
pyproject.toml (`tensorflow`, `tensorflow-text` and `keras`); they were last
checked with Keras 3.15.1, TensorFlow 2.21.0 and TensorFlow Text 2.21.1.

Rules for this module:

* one small function per private API; its docstring names the private
  symbol it wraps, the public API that is missing and why nlptool needs it;
  `PRIVATE_APIS` maps each function's name to that symbol;
* private modules are imported and private attributes looked up when the
  function is called, never at import time: an upgrade that removes one
  breaks the feature that uses it (with a `PrivateAPIError` naming this
  function and the symbol), not `import nlptool`;
* importing this module builds nothing and imports no more than Keras and
  TensorFlow (TensorFlow Text only when its entry is called);
* code elsewhere in nlptool calls these functions instead of touching
  `keras.src`, `tensorflow.python` or an underscore attribute of a Keras or
  TensorFlow object (the source scan in tests/test_compat.py checks this).

When an upgrade breaks an entry, fix it here (a new private spelling, or
the public API that has since appeared), then run tests/test_compat.py.
"""

import contextlib
import importlib

import keras
import tensorflow as tf

__all__ = [
    "PRIVATE_APIS",
    "PrivateAPIError",
    "call_has_mask_arg",
    "compute_loss",
    "cudnn_rnn_v3",
    "in_save_context",
    "learn_wordpiece_vocabulary",
    "loss_tracker",
    "moving_average_variables",
    "no_automatic_tracking",
    "symbolic_build",
    "trainable_variables_of",
    "unscaled_replica_loss",
]

# compat function -> the private symbol it wraps
PRIVATE_APIS = {
    "no_automatic_tracking": "keras.src.utils.tracking.DotNotTrackScope",
    "in_save_context": "tensorflow.python.saved_model.save_context.in_save_context",
    "cudnn_rnn_v3": "tf.raw_ops.CudnnRNNV3",
    "call_has_mask_arg": "keras.layers.Layer._call_has_mask_arg",
    "moving_average_variables": "keras.optimizers.Optimizer._model_variables_moving_average",
    "trainable_variables_of": "keras.optimizers.Optimizer._trainable_variables",
    "compute_loss": "keras.Model._compute_loss",
    "loss_tracker": "keras.Model._loss_tracker",
    "symbolic_build": "keras.Model._symbolic_build",
    "unscaled_replica_loss": "keras.src.losses.loss.unscale_loss_for_distribution",
    "learn_wordpiece_vocabulary": "tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib.learn",
}


class PrivateAPIError(RuntimeError):
    """A private Keras/TensorFlow symbol that a compat function wraps is gone or renamed."""

    def __init__(self, function, detail=""):
        self.function, self.symbol = function, PRIVATE_APIS[function]
        super().__init__(
            f"nlptool.compat.{function} relies on the private {self.symbol}, which is missing with "
            f"Keras {keras.__version__} and TensorFlow {tf.__version__} (the versions nlptool is pinned to "
            f"are in pyproject.toml): update nlptool/compat.py.{' ' + detail if detail else ''}"
        )


def _module(name, function):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise PrivateAPIError(function, f"({error})") from error


def _attribute(owner, name, function):
    try:
        return getattr(owner, name)
    except AttributeError as error:
        raise PrivateAPIError(function, f"({type(owner).__name__} has no {name!r})") from error


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


@contextlib.contextmanager
def no_automatic_tracking():
    """Within it, variables assigned to a Keras layer's attributes are not tracked.

    Wraps `keras.src.utils.tracking.DotNotTrackScope`, the scope behind
    `keras.src.utils.tracking.no_automatic_dependency_tracking`. A context
    manager, and a decorator when called: `@no_automatic_tracking()`.

    Missing public API: Keras 3 adds every variable assigned to a layer
    attribute to its weights, with no public way to opt out. nlptool keeps
    run-time state variables out of the weights, as `keras.layers.GRU` does
    with the same scope: the state of a stateful `nlptool.layers.GRU` (so its
    weight list matches `keras.layers.GRU`) and the states a language model
    carries between windows (never saved).
    """
    tracking = _module("keras.src.utils.tracking", "no_automatic_tracking")
    scope = _attribute(tracking, "DotNotTrackScope", "no_automatic_tracking")
    with scope():
        yield


def call_has_mask_arg(layer):
    """Whether `layer.call` takes a `mask` argument (Keras's own answer).

    Wraps `keras.layers.Layer._call_has_mask_arg`, set in `Layer.__init__`
    from the signature of `call`.

    Missing public API: no documented Layer attribute says whether to pass
    `mask=`; Keras's Sequential, Bidirectional and TimeDistributed decide
    with this flag. The adversarial sentiment classifier replays the layers
    after the embedding by hand and must pass masks exactly as Keras does.
    """
    return _attribute(layer, "_call_has_mask_arg", "call_has_mask_arg")


# --------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------


def moving_average_variables(optimizer):
    """The moving averages of a `use_ema=True` optimizer, one per variable of
    `trainable_variables_of(optimizer)`, in the same order (an entry may be
    None for a variable Keras does not average).

    Wraps `keras.optimizers.Optimizer._model_variables_moving_average`.

    Missing public API: Keras exposes the averages only through
    `finalize_variable_values` (a one-way overwrite) and SwapEMAWeights,
    whose TensorFlow path swaps by sums and differences and so rounds the
    weights. nlptool's `SwapAveragedWeights` swaps by copies and needs the
    average variables themselves.
    """
    if not getattr(optimizer, "use_ema", False) or not getattr(optimizer, "built", False):
        raise ValueError(
            f"moving_average_variables needs a built optimizer with use_ema=True, got {type(optimizer).__name__} "
            f"(use_ema={getattr(optimizer, 'use_ema', None)}, built={getattr(optimizer, 'built', None)})."
        )
    return _attribute(optimizer, "_model_variables_moving_average", "moving_average_variables")


def trainable_variables_of(optimizer):
    """The variables `optimizer` was built on, in the order of its slots and averages.

    Wraps `keras.optimizers.Optimizer._trainable_variables`.

    Missing public API: `optimizer.variables` lists the optimizer's own state,
    not the model variables it updates; `model.trainable_variables` need not
    be in the order the optimizer's moving averages were made in (a layer
    frozen or unfrozen after building). Pairing a variable with its average
    needs the optimizer's own list.
    """
    return _attribute(optimizer, "_trainable_variables", "trainable_variables_of")


# --------------------------------------------------------------------------
# Models, training loop and callbacks
# --------------------------------------------------------------------------


def compute_loss(model, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    """The compiled loss (plus regularisation losses) of `model`, as Keras's own train_step computes it.

    Wraps `keras.Model._compute_loss`, which calls `model.compute_loss` with
    or without `training=` depending on whether an override accepts it.

    Missing public API: `model.compute_loss` is public, but calling it with
    `training=` breaks subclasses that override it with the pre-Keras 3.3
    signature; Keras's train_step goes through this wrapper, and a custom
    train_step that means to compute the same loss does too.
    """
    method = _attribute(model, "_compute_loss", "compute_loss")
    return method(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


def loss_tracker(model):
    """The `Mean` metric behind the `loss` entry of `fit`'s logs (None before `compile`).

    Wraps `keras.Model._loss_tracker`.

    Missing public API: Keras's train_step updates this metric and
    `compute_metrics` reports it as `loss`; a custom train_step that
    computes its loss itself must update it, and Keras gives no public
    handle on it (it sits in `model.metrics` only after compile, by name).
    """
    return _attribute(model, "_loss_tracker", "loss_tracker")


def symbolic_build(model, batch):
    """Create every variable of the compiled `model` (layers, compiled
    metrics and loss, optimizer) from the shapes of one `batch`, without
    running it.

    Wraps `keras.Model._symbolic_build`, which `fit` calls under a
    tf.distribute strategy for the same reason.

    Missing public API: under a strategy, variables must be created in the
    strategy's scope and outside the replicated step; Keras creates the
    compiled metrics' variables and the optimizer's lazily, on the first
    step, and offers no public call that builds them all. nlptool's
    distributed training loop (`nlptool.distribute`) builds them first.
    """
    method = _attribute(model, "_symbolic_build", "symbolic_build")
    method(data_batch=batch)


def unscaled_replica_loss(loss):
    """`loss` as one replica computed it, before Keras divided it by the
    number of replicas in sync (the identity without a strategy).

    Wraps `keras.src.losses.loss.unscale_loss_for_distribution`.

    Missing public API: under a tf.distribute strategy a compiled loss comes
    back divided by the number of replicas, so that the summed gradients are
    those of the mean; Keras's train_step undoes that for the `loss` it
    logs, with this private function. A custom train_step that logs its
    loss does the same.
    """
    losses = _module("keras.src.losses.loss", "unscaled_replica_loss")
    return _attribute(losses, "unscale_loss_for_distribution", "unscaled_replica_loss")(loss)


# --------------------------------------------------------------------------
# SavedModel export and cuDNN
# --------------------------------------------------------------------------


def in_save_context():
    """Whether the current trace is for `tf.saved_model.save`.

    Wraps `tensorflow.python.saved_model.save_context.in_save_context`.

    Missing public API: TensorFlow has no public way to ask whether a
    function is being traced for export. `nlptool.layers.GRU` uses it so that
    an exported graph never contains cuDNN (whose op has no CPU kernel) or
    XLA, and so runs on any device.
    """
    save_context = _module("tensorflow.python.saved_model.save_context", "in_save_context")
    return bool(_attribute(save_context, "in_save_context", "in_save_context")())


def cudnn_rnn_v3(**kwargs):
    """Run cuDNN's RNN kernel: `tf.raw_ops.CudnnRNNV3(**kwargs)`, looked up at call time.

    Wraps `tf.raw_ops.CudnnRNNV3`. `tf.raw_ops` is a public namespace, but
    the op has no public wrapper and its attributes and outputs follow
    cuDNN, not a TensorFlow API (Keras's own wrapper is in the private
    `keras.src.backend.tensorflow.rnn`, for `keras.layers.GRU` only).

    Missing public API: no public TensorFlow or Keras function runs a cuDNN
    GRU on a caller's own weights. `nlptool.layers.gru_kernels` calls it
    (through `gru_kernels.CUDNN_OP`, which tests replace by a CPU emulation).
    """
    op = _attribute(tf.raw_ops, "CudnnRNNV3", "cudnn_rnn_v3")
    return op(**kwargs)


# --------------------------------------------------------------------------
# TensorFlow Text
# --------------------------------------------------------------------------


def learn_wordpiece_vocabulary(word_counts, **kwargs):
    """A WordPiece vocabulary learnt from `word_counts` ((word, count) pairs or a dict).

    Wraps `tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib.learn`
    (keyword arguments as that function's: vocab_size, reserved_tokens,
    lower_thresh, max_unique_chars, include_joiner_token, joiner, ...).
    TensorFlow Text is imported on the first call only.

    Missing public API: TensorFlow Text's documented vocabulary tool is
    `bert_vocab_from_dataset`, which splits and counts the words of a
    tf.data.Dataset itself with BERT's pre-tokenisation; nlptool counts words
    with its own normalisation and punctuation split (those of the
    `FastWordpieceTokenizer` it builds), so it calls the learner library
    that tool is built on, which is outside TensorFlow Text's API.
    """
    learner = _module(
        "tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib", "learn_wordpiece_vocabulary"
    )
    return _attribute(learner, "learn", "learn_wordpiece_vocabulary")(word_counts, **kwargs)
