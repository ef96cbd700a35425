"""Exports laid out for a model server, served by both SavedModel loaders.

A tiny Keras model in a serving module, no training: the version folders,
their permissions, the atomic write, the session-loader check, and the
weights stored once.
"""

import gc
import os
import stat

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import call_export, call_export_in_session

from nlptool.export import ExportError, ServingModule, save, serving_function
from nlptool.files import model_versions, saved_model_dir


def dense_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])


class Scores(ServingModule):
    def __init__(self, model):
        super().__init__(model, name="scores")

    @serving_function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": self.model(x, training=False)}


class TracksTheKerasModel(tf.Module):
    """What the serving modules were: the Keras model as a tracked attribute."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": self.model(x, training=False)}


X = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]


def export(module, base, **kwargs):
    return save(module, base, {"serving_default": module.serve}, **kwargs)


def test_versions_are_numbered_folders_readable_by_a_server(tmp_path):
    module = Scores(dense_model())
    first = export(module, tmp_path / "scores")
    second = export(module, tmp_path / "scores")
    assert (first, second) == (tmp_path / "scores" / "1", tmp_path / "scores" / "2")
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["1", "2"]  # no staging folder left
    assert model_versions(tmp_path / "scores") == [1, 2]
    assert saved_model_dir(tmp_path / "scores") == second and saved_model_dir(second) == second
    assert saved_model_dir(tmp_path) is None
    umask = os.umask(0)
    os.umask(umask)
    for path in (second, second / "variables"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask, oct(path.stat().st_mode)
    assert export(module, tmp_path / "scores", version=7) == tmp_path / "scores" / "7"
    assert saved_model_dir(tmp_path / "scores").name == "7"  # the highest, as TF Serving picks


def test_an_existing_version_is_replaced_only_when_asked(tmp_path):
    export(Scores(dense_model(0)), tmp_path / "m")
    with pytest.raises(ExportError, match=r"m/1 already exists; pass --overwrite"):
        export(Scores(dense_model(1)), tmp_path / "m", version=1)
    before = call_export(tmp_path / "m", [("serving_default", {"x": (X, "float32")})])
    export(Scores(dense_model(1)), tmp_path / "m", version=1, overwrite=True)
    after = call_export(tmp_path / "m", [("serving_default", {"x": (X, "float32")})])
    assert before != after
    np.testing.assert_allclose(after[0]["y"], dense_model(1)(np.array(X)), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


@pytest.mark.parametrize("version", [0, -1, "2", True])
def test_a_bad_version_is_refused(tmp_path, version):
    with pytest.raises(ExportError, match="whole number of at least 1"):
        export(Scores(dense_model()), tmp_path / "m", version=version)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_a_savedmodel_folder_is_not_a_model_folder(tmp_path):
    tf.saved_model.save(Scores(dense_model()), str(tmp_path / "flat"))
    with pytest.raises(ExportError, match="is a SavedModel itself"):
        export(Scores(dense_model()), tmp_path / "flat")


def test_both_loaders_serve_the_same_outputs(tmp_path):
    model = dense_model()
    path = export(Scores(model), tmp_path / "m")
    calls = [("serving_default", {"x": (X, "float32")})]
    eager, session = call_export(path, calls), call_export_in_session(path, calls)
    np.testing.assert_allclose(session[0]["y"], eager[0]["y"], atol=1e-6)
    np.testing.assert_allclose(eager[0]["y"], model(np.array(X)), atol=1e-6)


def test_each_weight_is_stored_once(tmp_path):
    model = dense_model()
    path = export(Scores(model), tmp_path / "m")
    stored = [
        (name, shape)
        for name, shape in tf.train.list_variables(str(path / "variables" / "variables"))
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]
    assert sorted(shape for _, shape in stored) == sorted(list(w.shape) for w in model.weights)


def test_a_module_that_the_session_loader_cannot_serve_is_refused(tmp_path):
    """Tracking the Keras model (not its tf.Variables) loads with tf.saved_model.load but leaves every
    variable uninitialised in TF Serving's loader: the export refuses it and writes nothing."""
    module = TracksTheKerasModel(dense_model())
    with pytest.raises(ExportError, match=r"leaves 4 variables uninitialised.*ServingModule"):
        export(module, tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_a_serving_function_keeps_its_module_when_the_caller_drops_it():
    """What a task's predict does with a module it does not keep: only the
    function is held. Each module has its own function, bound to itself."""
    model = dense_model()
    first, second = Scores(model), Scores(dense_model(seed=1))
    assert first.serve is not second.serve and isinstance(first.serve, tf.types.experimental.PolymorphicFunction)
    serve = Scores(model).serve
    gc.collect()
    np.testing.assert_allclose(serve(tf.constant(X))["y"], model(np.array(X)), atol=1e-6)
    concrete = Scores(model).serve.get_concrete_function()
    gc.collect()
    np.testing.assert_allclose(concrete(x=tf.constant(X))["y"], model(np.array(X)), atol=1e-6)
