"""nlptool.compat: every private Keras/TensorFlow API nlptool relies on, checked on real objects.

Each entry of `compat.PRIVATE_APIS` has a test here named `test_<entry>` that
exercises it on a tiny real Keras or TensorFlow object. After an upgrade
that removes or renames a private symbol, that test fails with a message
naming the compat function and the symbol; fix the entry in
nlptool/compat.py. The source scans at the end check that nothing outside
compat.py reaches into `keras.src`, `tensorflow.python` or the private
attributes compat wraps.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # `import nlptool` loads TensorFlow

import ast
import contextlib
import inspect
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import nlptool
import nlptool.layers
from nlptool import compat


def about(name):
    return (
        f"nlptool.compat.{name} (wraps {compat.PRIVATE_APIS[name]}; "
        f"Keras {keras.__version__}, TensorFlow {tf.__version__})"
    )


@contextlib.contextmanager
def private_api(name):
    """Turn a vanished or changed private symbol into a failure that names it."""
    try:
        yield
        return
    except compat.PrivateAPIError as error:
        message = str(error)
    except (AttributeError, ImportError, TypeError) as error:  # e.g. a changed signature
        message = f"{about(name)} no longer works: {type(error).__name__}: {error}"
    raise pytest.fail.Exception(message, pytrace=False) from None  # just the message, once


# --------------------------------------------------------------------------
# The module itself
# --------------------------------------------------------------------------


def test_every_entry_is_documented_and_tested():
    public = {
        name
        for name, value in vars(compat).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == compat.__name__
    }
    assert public == set(compat.PRIVATE_APIS), "every public function of compat must be an entry of PRIVATE_APIS"
    assert set(compat.__all__) == public | {"PRIVATE_APIS", "PrivateAPIError"}
    tests = {name for name in vars(sys.modules[__name__]) if name.startswith("test_")}
    for name, symbol in compat.PRIVATE_APIS.items():
        doc = inspect.getdoc(getattr(compat, name)) or ""
        # the symbol may be wrapped over two docstring lines
        assert symbol in " ".join(doc.split()), f"compat.{name}'s docstring must name {symbol}"
        assert "Missing public API" in doc, f"compat.{name}'s docstring must say which public API is missing"
        assert f"test_{name}" in tests, f"tests/test_compat.py has no test_{name}"


def test_error_names_the_function_and_the_symbol():
    with pytest.raises(compat.PrivateAPIError, match=r"compat\.call_has_mask_arg .*_call_has_mask_arg"):
        compat.call_has_mask_arg(object())


# --------------------------------------------------------------------------
# One test per entry, on real Keras/TensorFlow objects
# --------------------------------------------------------------------------


def test_no_automatic_tracking():
    layer = keras.layers.Layer()
    with private_api("no_automatic_tracking"):
        with compat.no_automatic_tracking():
            layer.hidden = keras.Variable(np.zeros(2, "float32"))
    layer.kept = keras.Variable(np.zeros(3, "float32"))
    shapes = [tuple(w.shape) for w in layer.weights]
    assert shapes == [(3,)], (
        f"{about('no_automatic_tracking')}: a variable assigned within it must stay out of the layer's weights, "
        f"one assigned after it must be tracked; the weights are {shapes}"
    )

    class Holder(keras.layers.Layer):
        @compat.no_automatic_tracking()  # as a decorator, the way nlptool uses it
        def hide(self):
            self.hidden = keras.Variable(np.zeros(2, "float32"))

    holder = Holder()
    with private_api("no_automatic_tracking"):
        holder.hide()
    assert holder.weights == [], f"{about('no_automatic_tracking')}: as a decorator it must keep variables untracked"

    # the use in nlptool: a stateful GRU's state is not a weight, as in keras.layers.GRU
    with private_api("no_automatic_tracking"):
        gru = nlptool.layers.GRU(3, stateful=True)
        gru.build((2, 4, 5))
    assert len(gru.weights) == 3 and gru.states is not None, (
        f"{about('no_automatic_tracking')}: a stateful nlptool GRU must have its three weights and "
        f"an untracked state, got {[w.path for w in gru.weights]}"
    )


def test_call_has_mask_arg():
    class Masked(keras.layers.Layer):
        def call(self, x, mask=None):
            return x

    layers = {
        "a layer whose call takes mask": Masked(),
        "keras.layers.Dense": keras.layers.Dense(2),
        "keras.layers.GRU": keras.layers.GRU(2),
        "nlptool.layers.GRU": nlptool.layers.GRU(2),
    }
    with private_api("call_has_mask_arg"):
        flags = {name: compat.call_has_mask_arg(layer) for name, layer in layers.items()}
    expected = {
        "a layer whose call takes mask": True,
        "keras.layers.Dense": False,
        "keras.layers.GRU": True,
        "nlptool.layers.GRU": True,
    }
    assert flags == expected, f"{about('call_has_mask_arg')}: got {flags}"


def averaging_optimizer():
    """A small model and a built Adam that averages its weights (momentum 0.5)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_moving_average_variables():
    model, optimizer = averaging_optimizer()
    with private_api("moving_average_variables"):
        averages = compat.moving_average_variables(optimizer)
    name = about("moving_average_variables")
    assert len(averages) == len(model.trainable_variables), f"{name}: one average per trainable variable"
    assert [tuple(a.shape) for a in averages] == [tuple(v.shape) for v in model.trainable_variables], (
        f"{name}: the averages must have the variables' shapes"
    )

    variables = model.trainable_variables
    gradients = [tf.ones_like(v) for v in variables]
    optimizer.apply_gradients(zip(gradients, variables))  # the first step copies the weights
    for average, variable in zip(averages, variables):
        np.testing.assert_allclose(average, variable, err_msg=f"{name}: after the first step, average = weights")
    before = [np.asarray(a) for a in averages]
    optimizer.apply_gradients(zip(gradients, variables))
    for average, old, variable in zip(averages, before, variables):
        np.testing.assert_allclose(
            average, 0.5 * old + 0.5 * np.asarray(variable), rtol=1e-6, err_msg=f"{name}: not a moving average"
        )

    plain = keras.optimizers.Adam(0.1)
    plain.build(model.trainable_variables)
    with pytest.raises(ValueError, match="use_ema=True"):
        compat.moving_average_variables(plain)


def test_trainable_variables_of():
    model, optimizer = averaging_optimizer()
    with private_api("trainable_variables_of"):
        variables = compat.trainable_variables_of(optimizer)
    assert [id(v) for v in variables] == [id(v) for v in model.trainable_variables], (
        f"{about('trainable_variables_of')}: must be the very variables the optimizer was built on, in order"
    )


def fixed_model(cls=keras.Model):
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")
    return cls(inputs, dense(inputs))


def test_compute_loss():
    x = np.array([[1.0, 2.0], [0.0, -1.0]], "float32")
    y = np.array([[1.0], [1.0]], "float32")

    class OldSignature(keras.Model):  # an override without `training`, as before Keras 3.3
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
            return super().compute_loss(x, y, y_pred, sample_weight) * 2.0

    for cls, factor in ((keras.Model, 1.0), (OldSignature, 2.0)):
        model = fixed_model(cls)
        model.compile(optimizer="sgd", loss="mse")
        y_pred = model(x)
        with private_api("compute_loss"):
            loss = compat.compute_loss(model, x=x, y=y, y_pred=y_pred, sample_weight=None, training=True)
        expected = factor * np.mean((np.asarray(y_pred) - y) ** 2)
        np.testing.assert_allclose(loss, expected, rtol=1e-6, err_msg=f"{about('compute_loss')} with {cls.__name__}")


def test_loss_tracker():
    class ConstantLoss(keras.Model):
        def train_step(self, data):  # as a custom train_step reports its loss
            x, y = data
            compat.loss_tracker(self).update_state(3.0)
            return self.compute_metrics(x, y, self(x), sample_weight=None)

    model = fixed_model(ConstantLoss)
    with private_api("loss_tracker"):
        assert compat.loss_tracker(model) is None, f"{about('loss_tracker')}: None before compile"
        model.compile(optimizer="sgd", loss="mse")
        tracker = compat.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker in model.metrics, f"{about('loss_tracker')}: {tracker}"
    with private_api("loss_tracker"):
        history = model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), epochs=1, verbose=0)
    assert history.history["loss"] == pytest.approx([3.0]), (
        f"{about('loss_tracker')}: fit's `loss` must be what the train step recorded, got {history.history}"
    )


def test_symbolic_build():
    model = fixed_model(keras.Model)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    batch = (tf.ones((3, 2)), tf.ones((3, 1)))
    with private_api("symbolic_build"):
        compat.symbolic_build(model, batch)
    assert model.optimizer.built, f"{about('symbolic_build')}: the optimizer's variables must exist"
    names = [variable.path for metric in model.metrics for variable in metric.variables]
    assert "mean_absolute_error/total" in names, f"{about('symbolic_build')}: the compiled metrics' variables: {names}"
    model.evaluate(*batch, verbose=0)  # and nothing was run: the step still traces and runs from here
    assert int(model.optimizer.iterations.numpy()) == 0


UNSCALED = """
import json, tensorflow as tf
(cpu,) = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from nlptool import compat
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
loss = keras.losses.MeanSquaredError()

def replica():
    scaled = loss(tf.ones((2, 1)), tf.zeros((2, 1)))  # 1 on one device; 1 / 2 on each of two replicas
    return scaled, compat.unscaled_replica_loss(scaled)

values = strategy.run(replica)
print(json.dumps([[float(v) for v in strategy.experimental_local_results(value)] for value in values]))
"""


def test_unscaled_replica_loss():
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", UNSCALED], capture_output=True, text=True, timeout=120)
    with private_api("unscaled_replica_loss"):
        if "PrivateAPIError" in done.stderr:
            raise compat.PrivateAPIError("unscaled_replica_loss")
    assert done.returncode == 0, done.stderr[-2000:]
    scaled, unscaled = json.loads(done.stdout.strip().splitlines()[-1])
    assert scaled == [0.5, 0.5] and unscaled == [1.0, 1.0], f"{about('unscaled_replica_loss')}: {scaled}, {unscaled}"


def test_in_save_context(tmp_path):
    seen = []

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def double(x):
        seen.append(compat.in_save_context())  # at trace time
        return 2.0 * x

    module = tf.Module()
    module.double = double
    with private_api("in_save_context"):
        assert compat.in_save_context() is False, f"{about('in_save_context')}: True outside any export"
        tf.saved_model.save(module, str(tmp_path))
    assert True in seen, f"{about('in_save_context')}: never True while tf.saved_model.save traced; saw {seen}"


def test_cudnn_rnn_v3():
    # building the op's node needs no GPU; running it would
    @tf.function
    def gru(x, h0, params, lengths):
        return compat.cudnn_rnn_v3(
            input=x,
            input_h=h0,
            input_c=tf.zeros([], x.dtype),
            params=params,
            sequence_lengths=lengths,
            rnn_mode="gru",
            input_mode="linear_input",
            direction="unidirectional",
            is_training=True,
            time_major=True,
        )

    with private_api("cudnn_rnn_v3"):
        traced = gru.get_concrete_function(
            tf.TensorSpec([4, 2, 3]), tf.TensorSpec([1, 2, 5]), tf.TensorSpec([None]), tf.TensorSpec([2], tf.int32)
        )
    ops = {op.type for op in traced.graph.get_operations()}
    assert "CudnnRNNV3" in ops, f"{about('cudnn_rnn_v3')}: no CudnnRNNV3 node in {ops}"
    outputs = traced.structured_outputs
    assert len(outputs) == 5, f"{about('cudnn_rnn_v3')}: expected (output, h, c, reserve_space, host_reserved)"
    assert outputs[0].shape.as_list() == [4, 2, 5] and outputs[1].shape.as_list() == [1, 2, 5], (
        f"{about('cudnn_rnn_v3')}: output shapes {[o.shape for o in outputs]}"
    )


def test_learn_wordpiece_vocabulary():
    counts = {"low": 50, "lower": 30, "lowest": 20, "new": 40, "newer": 25, "wide": 10}
    reserved = ["<pad>", "<unk>"]
    with private_api("learn_wordpiece_vocabulary"):
        vocabulary = compat.learn_wordpiece_vocabulary(
            counts,
            vocab_size=40,
            reserved_tokens=reserved,
            lower_thresh=1,
            max_unique_chars=100,
            include_joiner_token=True,
            joiner="##",
        )
    name = about("learn_wordpiece_vocabulary")
    assert vocabulary[: len(reserved)] == reserved, f"{name}: the reserved tokens come first, got {vocabulary[:4]}"
    assert len(vocabulary) <= 40 and len(set(vocabulary)) == len(vocabulary), f"{name}: {vocabulary}"
    assert any(piece.startswith("##") and piece != "##" for piece in vocabulary), f"{name}: no suffix piece"
    for char in "lowerstnid":
        assert char in vocabulary and f"##{char}" in vocabulary, f"{name}: every character must be a piece"


# --------------------------------------------------------------------------
# Nothing outside compat.py touches the private APIs
# --------------------------------------------------------------------------

PACKAGE = Path(nlptool.__file__).parent
PRIVATE_MODULES = ("keras.src", "tensorflow.python", "tensorflow_text.python", "tensorflow_text.tools")
# the private attributes compat wraps, and private namespaces of TensorFlow
PRIVATE_ATTRIBUTES = {symbol.rsplit(".", 1)[1] for symbol in compat.PRIVATE_APIS.values() if "._" in symbol}
PRIVATE_ATTRIBUTES |= {"CudnnRNNV3", "__internal__"}
SCOPES = [pytest.param((), id="whole-package")]


def package_sources(excluded):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "compat.py" or relative.startswith(excluded):
            continue
        yield relative, path.read_text(encoding="utf-8")


def is_private_module(name):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in PRIVATE_MODULES)


def private_imports(source):
    """(line, text) of every import of a private module, `import_module("...")` included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            names = [str(node.args[0].value)] if called in ("import_module", "__import__") else []
        else:
            continue
        if any(is_private_module(name) for name in names):
            found.append(node.lineno)
    return found


def private_attributes(source):
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES
    ]


def offenders(excluded, finder):
    lines = []
    for relative, source in package_sources(excluded):
        text = source.splitlines()
        lines += [f"nlptool/{relative}:{n}: {text[n - 1].strip()}" for n in sorted(set(finder(source)))]
    return lines


@pytest.mark.parametrize("excluded", SCOPES)
def test_no_private_imports_outside_compat(excluded):
    found = offenders(excluded, private_imports)
    assert not found, (
        f"imports of {', '.join(PRIVATE_MODULES)} outside nlptool/compat.py (add an entry there and call it):\n"
        + "\n".join(found)
    )


@pytest.mark.parametrize("excluded", SCOPES)
def test_no_private_attributes_outside_compat(excluded):
    found = offenders(excluded, private_attributes)
    assert not found, (
        f"private Keras/TensorFlow attributes ({', '.join(sorted(PRIVATE_ATTRIBUTES))}) used outside "
        "nlptool/compat.py (call the compat function instead):\n" + "\n".join(found)
    )
