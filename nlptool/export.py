"""SavedModel export: laid out for a model server, written whole or not at all.

An export is a model folder of numbered versions, `EXPORT/1/`, `EXPORT/2/`,
as TF Serving reads one (it serves the highest number). Each version is
saved into a temporary folder beside it (a name TF Serving ignores),
checked there with both loaders that serve SavedModels (`tf.saved_model.load`
and the session-based loader of TF Serving and `saved_model_cli`), and
only then moved into place with a rename. So a model server polling the
folder never sees a half-written version, and an existing version is
replaced only with `overwrite=True` and kept if the new one fails. One
export writes into a model folder at a time (it holds the folder's lock),
and the next export cleans up what a killed one left.
"""

import contextlib
import inspect
import os
import shutil
import tempfile
import types
from pathlib import Path

import tensorflow as tf

from nlptool.errors import NlptoolError
from nlptool.files import locked, model_versions, write_json


class ExportError(NlptoolError, RuntimeError):
    """The export could not be written or did not verify."""


class ServingModule(tf.Module):
    """The base of every task's serving module: it tracks the Keras model's
    weights as the `tf.Variable`s the serving functions read, and holds the
    model itself out of the SavedModel's object graph.

    Why: a Keras 3 variable is a trackable wrapper around a `tf.Variable`.
    When a SavedModel is written, the wrapper maps itself to a *new*
    variable initialised from the copy of the inner one, and the TF1-style
    saver in the MetaGraph restores into that new variable. The functions
    read the copy of the inner variable, which nothing restores, so a
    session-based loader (TF Serving's, `saved_model_cli run`) fails with
    "Could not find variable ...". Tracking the inner `tf.Variable`s makes
    them the saved nodes, restored by both loaders; leaving the Keras model
    untracked keeps each weight once in `variables/` (tracking both would
    store it twice). `keras.export.ExportArchive` tracks both.
    """

    def __init__(self, model, name):
        super().__init__(name=name)
        self._keras = types.SimpleNamespace(model=model)  # not a trackable: tf.Module does not look inside
        self.model_variables = [_tf_variable(variable) for variable in model.variables]
        for attribute, method in inspect.getmembers(type(self), inspect.isfunction):
            options = getattr(method, SERVING_OPTIONS, None)
            if options is not None:
                setattr(self, attribute, tf.function(getattr(self, attribute), **options))

    @property
    def model(self):
        return self._keras.model


SERVING_OPTIONS = "__nlptool_serving_function__"


def serving_function(**options):
    """Marks a method of a `ServingModule` as one of its `tf.function`s
    (`options` are `tf.function`'s: `input_signature`, ...). Each module
    makes its own `tf.function` of the method bound to itself when it is
    built, so `module.NAME` is that function, as with `@tf.function`.

    Why not `@tf.function` on the method: TensorFlow binds a decorated
    method to its instance through a weak reference and a stand-in object
    (`TfMethodTarget`). A module that its caller dropped then leaves its
    signatures without their `self`, and a trace has been seen, once in a
    loaded test run, to find the stand-in in place of the module ("'TfMethodTarget'
    object has no attribute ..."). A function bound here holds its module
    strongly, and traces with the module itself as `self`.
    """

    def mark(method):
        setattr(method, SERVING_OPTIONS, options)
        return method

    return mark


def _tf_variable(variable):
    if isinstance(variable, tf.Variable):
        return variable
    inner = variable.value  # a Keras variable's tf.Variable, outside any autocast scope
    if not isinstance(inner, tf.Variable):
        raise ExportError(f"The weight {variable.path} is not backed by a tf.Variable ({type(inner).__name__}).")
    return inner


def save(module, base_dir, signatures, version=None, overwrite=False, extra=None):
    """Save `module` with `signatures` (name -> tf.function or concrete
    function) as version `version` of the model folder `base_dir` (default:
    one above the highest there), with the JSON files `extra` (relative path
    -> payload, e.g. "assets.extra/nlptool.json") inside; returns the
    version's folder.

    Raises ExportError if that version exists and `overwrite` is False, if
    `base_dir` is a SavedModel itself rather than a model folder, or if the
    saved model does not load back with every signature in both loaders.
    """
    base_dir = Path(base_dir)
    if (base_dir / "saved_model.pb").is_file():
        raise ExportError(
            f"{base_dir} is a SavedModel itself; an export is a folder of numbered versions ({base_dir}/1/ ...). "
            "Export to another folder."
        )
    if base_dir.exists() and not base_dir.is_dir():
        raise ExportError(f"{base_dir} is a file, not a folder to export into.")
    with locked(base_dir, "exporting"), _tensorflow_logs_quiet():
        _clean_up(base_dir)
        return _save(module, base_dir, signatures, version, overwrite, extra)


@contextlib.contextmanager
def _tensorflow_logs_quiet():
    """TensorFlow's Python log, errors only: saving logs where it wrote the
    assets (the staging folder, about to be renamed), and the check with the
    session loader a deprecation notice for the loader TF Serving still uses,
    neither of them news to whoever exports."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _clean_up(base_dir):
    """Undo what an export killed midway left in `base_dir`: its staging
    folder, and a version moved aside for its replacement (put back)."""
    for entry in base_dir.glob(".*.partial-*"):
        shutil.rmtree(entry, ignore_errors=True)
    for entry in base_dir.glob(".*.previous"):
        version = base_dir / entry.name[1 : -len(".previous")]
        if version.exists():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            os.replace(entry, version)


def _save(module, base_dir, signatures, version, overwrite, extra):
    existing = model_versions(base_dir)
    if version is None:
        version = existing[-1] + 1 if existing else 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"The version must be a whole number of at least 1, not {version!r}.")
    out_dir = base_dir / str(version)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists; pass --overwrite (overwrite=True) to replace version {version}.")
    staging = Path(tempfile.mkdtemp(dir=base_dir, prefix=f".{version}.partial-"))
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        for name, payload in (extra or {}).items():
            write_json(staging / name, payload)
        loaded = tf.saved_model.load(str(staging))
        missing = sorted(set(signatures) - set(loaded.signatures))
        if missing:
            raise ExportError(f"The saved model lacks the signatures {missing}.")
        check_session_loader(staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp made it private; a model server may run as another user
        if out_dir.exists():
            previous = base_dir / f".{version}.previous"
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(out_dir, previous)
            os.replace(staging, out_dir)
            shutil.rmtree(previous)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the export succeeded
    return out_dir


def check_session_loader(export_dir):
    """Load `export_dir` as TF Serving does (a graph, a session, the
    MetaGraph's restore and init ops) and raise ExportError if any variable
    of the graph is left uninitialised, which would fail every request."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export_dir))
        handles = [op for op in graph.get_operations() if op.type == "VarHandleOp"]
        with graph.as_default():
            checks = [tf.raw_ops.VarIsInitializedOp(resource=op.outputs[0]) for op in handles]
        missing = [op.get_attr("shared_name").decode() for op, ok in zip(handles, session.run(checks)) if not ok]
    if missing:
        raise ExportError(
            f"The session-based loader (TF Serving, saved_model_cli) leaves {len(missing)} variables "
            f"uninitialised, e.g. {missing[:3]}: the serving module tracks Keras variables, not their "
            "tf.Variables (derive it from nlptool.export.ServingModule)."
        )


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
