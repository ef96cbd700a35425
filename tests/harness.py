"""One test harness for layers, tokenisers and tasks, in the way keras-hub's
`run_layer_test` / `run_task_test` are: each check is a function, and a
task's test calls `run_task_test` instead of writing its own copy.

- `in_fresh_process(script)` runs Python code in a new interpreter that
  never imports nlptool, and returns what it prints as JSON.
- `call_export(export_dir, calls)` loads a SavedModel there with
  `tf.saved_model.load` and calls signatures on inputs;
  `call_export_in_session` does the same through the session-based loader
  of TF Serving and `saved_model_cli`, and `assert_served_alike` checks
  that both (and `saved_model_cli show` / `run`) agree.
- `run_layer_test(layer, inputs)` checks get_config / from_config, the
  `.keras` round trip and a training step.
- `run_task_test(task, splits, overrides, texts, tmp_path)` trains a tiny
  run, checks the config round trip, the `.keras` round trip of the model,
  export and reload in fresh processes without nlptool (both loaders), that `predict` on
  the run and on the export agree, and (with `resume=True`) that an
  interrupted run resumes to the weights of an uninterrupted one.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from nlptool import config as config_lib
from nlptool import runs
from nlptool import tasks as task_registry
from nlptool.files import saved_model_dir


def in_fresh_process(script, *, tensorflow_text=False, timeout=300):
    """Run `script` in a new Python process; return the JSON its last line prints.

    The process must not import nlptool (asserted after the script), nor
    tensorflow_text unless `tensorflow_text` (which then imports it first,
    as TF Serving's binary registers its ops)."""
    prologue = "import tensorflow_text\n" if tensorflow_text else ""
    forbidden = ["nlptool"] + ([] if tensorflow_text else ["tensorflow_text"])
    epilogue = f"""
import sys as _sys
_leaked = [m for m in _sys.modules if m.split(".")[0] in {forbidden!r}]
assert not _leaked, f"the fresh process imported {{_leaked}}"
"""
    code = prologue + textwrap.dedent(script) + epilogue
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def call_export(export_dir, calls, *, tensorflow_text=False):
    """Outputs of signature calls on an export, in a process without nlptool.

    `calls` is a list of (signature name, {input name: (value, dtype name)});
    returns one {output name: nested list} per call, strings decoded.
    `export_dir` is a SavedModel or a model folder (its highest version)."""
    export_dir = saved_model_dir(export_dir)
    script = f"""
import json
import numpy as np
import tensorflow as tf

def plain(value):
    value = value.numpy()
    if value.dtype == object and value.size:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value).tolist()
    return value.tolist()

loaded = tf.saved_model.load({str(export_dir)!r})
results = []
for name, inputs in {calls!r}:
    arguments = {{key: tf.constant(value, dtype=dtype) for key, (value, dtype) in inputs.items()}}
    outputs = loaded.signatures[name](**arguments)
    results.append({{key: plain(value) for key, value in outputs.items()}})
print(json.dumps(results))
"""
    return in_fresh_process(script, tensorflow_text=tensorflow_text)


def call_export_in_session(export_dir, calls, *, tensorflow_text=False):
    """As `call_export`, through the session-based loader that TF Serving
    and `saved_model_cli` use: `tf.compat.v1.saved_model.loader.load` into a
    graph session, each signature run by its SignatureDef's tensor names."""
    export_dir = saved_model_dir(export_dir)
    script = f"""
import json
import numpy as np
import tensorflow as tf

def plain(value):
    if value.dtype == object and value.size:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(value).tolist()
    return value.tolist()

results = []
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], {str(export_dir)!r})
    for name, inputs in {calls!r}:
        signature = meta_graph.signature_def[name]
        feed = {{
            signature.inputs[key].name: np.array(value, dtype=tf.as_dtype(dtype).as_numpy_dtype)
            for key, (value, dtype) in inputs.items()
        }}
        fetches = {{key: tensor.name for key, tensor in signature.outputs.items()}}
        results.append({{key: plain(value) for key, value in session.run(fetches, feed).items()}})
print(json.dumps(results))
"""
    return in_fresh_process(script, tensorflow_text=tensorflow_text)


def saved_model_cli(*args, tensorflow_text=False):
    """Run `saved_model_cli ARGS` of this environment; returns what it printed.
    With `tensorflow_text`, its ops are registered first (as in TF Serving's binary)."""
    prologue = "import tensorflow_text; " if tensorflow_text else ""
    # the console script's entry point, so that tensorflow_text can be imported before it
    main = (
        "from tensorflow.python.tools import saved_model_cli; sys.argv[0] = 'saved_model_cli'; saved_model_cli.main()"
    )
    code = prologue + "import sys; " + main
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=""),
        cwd="/",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_served_alike(export_dir, calls, *, tensorflow_text=False):
    """Both loaders that serve SavedModels give the same outputs for `calls`
    (in processes without nlptool), and `saved_model_cli show --all` and
    `run` work on the export; returns the outputs of `tf.saved_model.load`."""
    eager = call_export(export_dir, calls, tensorflow_text=tensorflow_text)
    session = call_export_in_session(export_dir, calls, tensorflow_text=tensorflow_text)
    for (name, _), first, second in zip(calls, eager, session, strict=True):
        assert first.keys() == second.keys(), name
        for key in first:
            if _is_text(first[key]):
                assert first[key] == second[key], f"{name}.{key}"
            else:
                np.testing.assert_allclose(
                    np.array(first[key]), np.array(second[key]), atol=1e-5, err_msg=f"{name}.{key}"
                )
    export_dir = saved_model_dir(export_dir)
    shown = saved_model_cli("show", "--dir", export_dir, "--all", tensorflow_text=tensorflow_text)
    for name, _ in calls:
        assert f"signature_def['{name}']" in shown, name
    name, inputs = next(call for call in calls if call[0] == "serving_default")
    expressions = ";".join(f"{key}={value!r}" for key, (value, _) in inputs.items())
    printed = saved_model_cli(
        "run",
        "--dir",
        export_dir,
        "--tag_set",
        "serve",
        "--signature_def",
        name,
        "--input_exprs",
        expressions,
        tensorflow_text=tensorflow_text,
    )
    for key in eager[calls.index((name, inputs))]:
        assert f"Result for output key {key}:" in printed, key
    return eager


def _is_text(value):
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str)


def run_layer_test(layer, inputs, *, expected_output_shape=None, atol=1e-6):
    """A layer's contract: from_config(get_config()) rebuilds a layer of the
    same config; a model holding it survives the `.keras` round trip with
    the same outputs; one training step changes its trainable weights."""
    import tempfile

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config, "from_config(get_config()) gave another config"
    inputs = np.asarray(inputs)
    model_input = keras.Input(shape=inputs.shape[1:], dtype=str(inputs.dtype))
    model = keras.Model(model_input, layer(model_input))
    outputs = np.asarray(model(inputs))
    if expected_output_shape is not None:
        assert outputs.shape == tuple(expected_output_shape), outputs.shape
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(restored(inputs)), outputs, atol=atol)
    if layer.trainable_weights:
        before = [np.array(w) for w in layer.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(inputs, np.ones_like(outputs))
        after = [np.array(w) for w in layer.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "a training step changed no weight"
    return outputs


def _quiet(*args):
    pass


def train_tiny(task, splits, overrides, run_dir, **options):
    """A run of `task` on `splits` with the config defaults and `overrides`."""
    task = task_registry.get(task) if isinstance(task, str) else task
    config = config_lib.resolve(task.config_class, [], list(overrides))
    return runs.train(task, config, splits, run_dir, options=options, verbose=0, say=_quiet)


def run_task_test(
    task,
    splits,
    overrides,
    texts,
    tmp_path,
    *,
    predict_options=None,
    signature_calls=None,
    resume=False,
    tensorflow_text=False,
    interrupted_at_epoch=None,
):
    """A task's contract on a tiny model (see the module docstring); returns the Run."""
    task = task_registry.get(task) if isinstance(task, str) else task
    predict_options = predict_options or {}

    # === config: defaults, overrides and YAML round trip ===
    config = config_lib.resolve(task.config_class, [], list(overrides))
    assert config_lib.from_dict(task.config_class, config_lib.to_dict(config)) == config
    config_lib.save_yaml(config, tmp_path / "config.yaml")
    assert config_lib.resolve(task.config_class, [tmp_path / "config.yaml"]) == config

    # === train: every epoch logged, the run finished ===
    run = train_tiny(task, splits, overrides, tmp_path / "run")
    history = (run.path / "history.csv").read_text(encoding="utf-8").splitlines()
    summary = json.loads((run.path / runs.TRAINING_FILE).read_text(encoding="utf-8"))
    assert len(history) - 1 == summary["epochs"] >= 1
    assert run.finished and runs.Run.open(run.path).config == run.config

    # === the model's .keras round trip ===
    trained = run.load()
    trained.model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert type(restored) is type(trained.model)
    for a, b in zip(trained.model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    # === export: the same predictions from the run, the export, and a process without nlptool ===
    export_dir = run.export(tmp_path / "export")
    from_run = run.predict(texts, **predict_options)
    exported = runs.load(export_dir)
    assert exported.task.name == task.name
    from_export = exported.predict(texts, **predict_options)
    _assert_rows_close(from_run, from_export)
    inputs = {task.input_name: (list(texts), "string")}
    calls = [("serving_default", inputs), *(signature_calls or [])]
    fresh = assert_served_alike(export_dir, calls, tensorflow_text=tensorflow_text)[0]
    in_process = exported.signatures["serving_default"](**{task.input_name: np.array(texts, dtype=object)})
    for name, value in in_process.items():
        value = value.numpy()
        if value.dtype == object:
            assert fresh[name] == [v.decode("utf-8") for v in value.reshape(-1)] or np.array(fresh[name]).reshape(
                -1
            ).tolist() == [v.decode("utf-8") for v in value.reshape(-1)], name
        else:
            np.testing.assert_allclose(np.array(fresh[name]), value, atol=1e-5, err_msg=name)

    # === resume: interrupted after the first epoch, then the same request again ===
    if resume:
        assert interrupted_at_epoch is not None, "pass the interrupted_at_epoch fixture with resume=True"
        with interrupted_at_epoch(1):
            train_tiny(task, splits, overrides, tmp_path / "resumed")
        train_tiny(task, splits, overrides, tmp_path / "resumed")
        resumed = runs.Run.open(tmp_path / "resumed").load()
        for a, b in zip(trained.model.get_weights(), resumed.model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    return run


def _assert_rows_close(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float):
                np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)
            elif isinstance(a[key], dict):
                np.testing.assert_allclose(list(a[key].values()), list(b[key].values()), atol=1e-5, err_msg=key)
            elif key == "n_best":
                assert [t for t, _ in a[key]] == [t for t, _ in b[key]]
            else:
                assert a[key] == b[key], key


def call_signature(signature, **values):
    """Call a loaded SavedModel signature with plain values, each made a
    tensor of the dtype the signature declares for it."""
    import tensorflow as tf

    specs = signature.structured_input_signature[1]
    return signature(**{name: tf.constant(value, specs[name].dtype) for name, value in values.items()})
