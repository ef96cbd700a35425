"""The task contract: a new task needs no edit to the CLI or the flow, and
the flow's run directory keeps one run per directory.

`ParityTask` is a whole task in a few dozen lines (is a text's length in
bytes even or odd?); registering it makes `nlptool train parity`,
`evaluate`, `export` and `predict` work end to end.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses
import json
import subprocess
import sys

import pytest
from harness import call_export, train_tiny

from nlptool import runs, tasks
from nlptool.cli import main
from nlptool.errors import DataError, RunError, UsageError
from nlptool.tasks import base

# === A toy task, declared as any task is ===


@dataclasses.dataclass
class ParityModel:
    embedding_dim: int = 4


@dataclasses.dataclass
class ParityConfig:
    tokenizer: base.TokenizerConfig = dataclasses.field(default_factory=lambda: base.TokenizerConfig(kind="byte"))
    model: ParityModel = dataclasses.field(default_factory=ParityModel)
    training: base.TrainingConfig = dataclasses.field(default_factory=lambda: base.TrainingConfig(epochs=2))


class ParityTask(base.Task):
    name = "parity"
    description = "tell whether a text has an even or odd number of bytes"
    config_class = ParityConfig
    columns = {"text": "the texts", "label": "even or odd"}
    has_labels = True
    monitor = ("val_accuracy", "max")
    signatures = ("serving_default",)

    def read_data(self, source, config):
        from nlptool.data.splits import load_labeled_data

        data = load_labeled_data(
            source.train_file, "text", "label", test_path=source.test_file, validation_fraction=0.25
        )
        return base.Splits(data.train, data.validation, data.test)

    def read_split(self, source, config, split=None):
        from nlptool.data.labels import read_labeled

        return read_labeled(source.test_file, "text", "label", min_classes=1), "test"

    def prepare(self, config, splits):
        from nlptool import tokenizers
        from nlptool.data import LabelMap

        return config, base.Preprocessing(
            {"text": tokenizers.create("byte")}, LabelMap.from_labels(splits.train["label"])
        )

    def build_model(self, config, preprocessing):
        import keras

        ids = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(preprocessing.tokenizers["text"].vocabulary_size(), config.model.embedding_dim)(ids)
        x = keras.layers.GlobalAveragePooling1D()(x)
        return keras.Model(ids, keras.layers.Dense(len(preprocessing.labels), activation="softmax")(x))

    def compile(self, model, config):
        from nlptool import training

        model.compile(training.optimizer(config.training), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def datasets(self, config, preprocessing, splits, epoch):
        from nlptool.data.pipeline import make_dataset

        def batches(frame, shuffle):
            labels = preprocessing.labels.encode(frame["label"])
            return make_dataset(
                frame["text"],
                labels,
                preprocessing.tokenizers["text"],
                4,
                shuffle=shuffle,
                seed=1,
                epoch=epoch if shuffle else None,
                bucket_boundaries=None,
            )

        return base.Batches(batches(splits.train, True), batches(splits.validation, False))

    def evaluate(self, trained, frame, split):
        import numpy as np

        probabilities = trained.model.predict(
            trained.preprocessing.tokenizers["text"](frame["text"].tolist()), verbose=0
        )
        correct = probabilities.argmax(axis=1) == trained.preprocessing.labels.encode(frame["label"])
        return {"split": split, "examples": len(frame), "accuracy": float(np.mean(correct))}

    def serving_module(self, trained):
        import tensorflow as tf

        from nlptool.export import ServingModule, serving_function

        class Serving(ServingModule):
            def __init__(self, tokenizer, model, names):
                super().__init__(model, name="parity_serving")
                self.tokenizer, self.names = tokenizer, tf.constant(names)

            @serving_function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
            def serve(self, text):
                probabilities = self.model(self.tokenizer(text))
                return {"label": tf.gather(self.names, tf.argmax(probabilities, axis=-1))}

        module = Serving(trained.preprocessing.tokenizers["text"], trained.model, trained.preprocessing.labels.names)
        return module, {"serving_default": module.serve}

    def predict(self, signatures, texts):
        import tensorflow as tf

        labels = signatures["serving_default"](text=tf.constant(texts))["label"].numpy()
        return [{"label": label.decode("utf-8")} for label in labels]


TEXTS = ["ab", "abc", "abcd", "a", "xyzw", "xyz", "hello!", "hello", "aa", "aaa", "bbbb", "b"] * 2


@pytest.fixture
def parity(tmp_path):
    tasks.register(ParityTask)
    train = tmp_path / "parity.csv"
    rows = "".join(f"{text},{'even' if len(text) % 2 == 0 else 'odd'}\n" for text in TEXTS)
    train.write_text("text,label\n" + rows, encoding="utf-8")
    yield train
    tasks.REGISTRY.pop("parity")
    tasks._LOADED.pop("parity", None)


def test_a_registered_task_runs_through_the_cli_end_to_end(parity, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "parity", "--train-file", str(parity), "--test-file", str(parity), "--run-dir", str(run_dir)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "18 training, 6 validation, 24 test examples" in out
    assert f"wrote {run_dir / 'metrics.json'}" in out
    assert json.loads((run_dir / "run.json").read_text())["task"] == "parity"
    accuracy = json.loads((run_dir / "metrics.json").read_text())["accuracy"]
    assert main(["evaluate", str(run_dir)]) == 0  # the run's own test file again
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] == accuracy
    assert main(["export", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["predict", str(run_dir / "export"), "ab", "abc"]) == 0
    from_export = capsys.readouterr().out.splitlines()
    assert main(["predict", str(run_dir), "ab", "abc"]) == 0
    assert capsys.readouterr().out.splitlines() == from_export
    assert [line.split("\t")[-1] for line in from_export] == ["ab", "abc"]
    # the export serves in a process that never imports nlptool, with the labels predict printed
    served = call_export(run_dir / "export", [("serving_default", {"text": (["ab", "abc"], "string")})])[0]
    assert served["label"] == [line.split("\t")[0] for line in from_export]


def test_train_help_lists_only_the_tasks_own_options(parity, capsys):
    with pytest.raises(SystemExit):
        main(["train", "parity", "--help"])
    shown = capsys.readouterr().out
    assert "--text-column" in shown and "(default: text)" in shown
    assert "--source-lang" not in shown and "--init-from" not in shown and "--max-new-tokens" not in shown


def test_a_run_directory_holds_one_run(parity, tmp_path):
    run_dir = tmp_path / "run"
    source = base.DataSource(train_file=parity)
    task = tasks.get("parity")
    config = ParityConfig()
    runs.train(task, config, source, run_dir, verbose=0, say=lambda *a: None)
    (run_dir / "stale.txt").write_text("from the first run")
    with pytest.raises(RunError, match=r"training\.epochs: 2 in the run, 3 now.*--overwrite"):
        runs.train(
            task, dataclasses.replace(config, training=base.TrainingConfig(epochs=3)), source, run_dir, verbose=0
        )
    with pytest.raises(RunError, match="finished run of these settings"):
        runs.train(task, config, source, run_dir, verbose=0)
    other = base.DataSource(train_file=parity, max_train_examples=10)
    with pytest.raises(RunError, match="data.max_train_examples: None in the run, 10 now"):
        runs.train(task, config, other, run_dir, verbose=0)
    runs.train(task, config, other, run_dir, verbose=0, overwrite=True, say=lambda *a: None)
    assert not (run_dir / "stale.txt").exists()  # overwrite starts afresh: nothing of the first run is left
    assert json.loads((run_dir / "run.json").read_text())["data"]["max_train_examples"] == 10


def test_a_directory_that_is_no_run_is_never_overwritten(parity, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds no nlptool run"):
        runs.train("parity", ParityConfig(), base.DataSource(train_file=parity), tmp_path, overwrite=True, verbose=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_new_run_that_fails_before_its_first_epoch_leaves_nothing(parity, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the model could not be built")

    monkeypatch.setattr(ParityTask, "build_model", broken)
    with pytest.raises(RuntimeError, match="could not be built"):
        runs.train("parity", ParityConfig(), base.DataSource(train_file=parity), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_wrong_commands_for_a_run_are_one_line_errors(parity, tmp_path, capsys):
    run = train_tiny("parity", runs_splits(parity), [], tmp_path / "run")
    for command in ("generate", "translate"):
        assert main([command, str(run.path), "ab"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"nlptool: error: {run.path} is a parity run; `nlptool {command}` is for")
        assert "\n" not in error
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(UsageError, match="a list of texts"):
        run.predict("ab")


def runs_splits(path):
    return tasks.get("parity").read_data(base.DataSource(train_file=path), ParityConfig())


def test_predict_reads_standard_input_and_files(parity, tmp_path, capsys, monkeypatch):
    import io

    run = train_tiny("parity", runs_splits(parity), [], tmp_path / "run")
    assert main(["predict", str(run.path), "ab", "abc", "--json"]) == 0
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["input"] for row in expected] == ["ab", "abc"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("ab\nabc\n"))
    assert main(["predict", str(run.path), "-", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == expected
    (tmp_path / "texts.txt").write_text("ab\nabc\n")
    assert main(["predict", str(run.path), "--input", str(tmp_path / "texts.txt"), "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == expected
    assert main(["predict", str(run.path)]) == 2
    assert "Nothing to predict" in capsys.readouterr().err


def test_the_cli_parses_without_tensorflow_and_knows_its_version(capsys):
    # what `--help` costs is measured by benchmarks/cli_startup.py; here: building the parsers imports no TensorFlow
    code = (
        "import sys; from nlptool.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'pandas')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    with pytest.raises(SystemExit):
        main(["--version"])
    from nlptool import __version__

    assert capsys.readouterr().out.strip() == f"nlptool {__version__}"


def test_commands_print_no_tensorflow_start_up_noise(parity, tmp_path):
    run = train_tiny(
        "sentiment",
        tasks.get("sentiment").from_frames(runs_splits(parity).train, config=None),
        ["model.units=2", "model.embedding_dim=2", "tokenizer.vocab_size=20", "training.epochs=1"],
        tmp_path / "run",
    )
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "nlptool.cli", "predict", str(run.path), "ab"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.split("\t")[-1].strip() == "ab"


def test_the_python_api_trains_from_a_data_frame_and_loads_runs_and_exports(tmp_path):
    import pandas as pd

    import nlptool

    texts = ["good fun", "great cast", "lovely film", "dull plot", "bad acting", "boring film"] * 4
    frame = pd.DataFrame({"review": texts, "stars": ["5", "5", "5", "1", "1", "1"] * 4})
    tiny = ["model.units=2", "model.embedding_dim=2", "tokenizer.vocab_size=30", "training.epochs=1"]
    run = nlptool.train(
        "sentiment",
        tmp_path / "run",
        train=frame,
        columns={"text": "review", "label": "stars"},
        overrides=tiny,
        verbose=0,
    )
    assert isinstance(run, runs.Run) and run.finished
    loaded = nlptool.load(tmp_path / "run")
    rows = loaded.predict(["great fun", "boring plot"])
    assert rows == run.predict(["great fun", "boring plot"])
    assert set(rows[0]) == {"label", "probability", "probabilities"} and set(rows[0]["probabilities"]) == {"1", "5"}
    exported = nlptool.load(loaded.export())
    assert [row["label"] for row in exported.predict(["great fun", "boring plot"])] == [row["label"] for row in rows]
    test_file = tmp_path / "test.csv"
    frame.to_csv(test_file, index=False)
    with pytest.raises(UsageError, match="trained without test data"):
        loaded.evaluate()  # trained from a data frame: no file to go back to
    metrics = loaded.evaluate(test_file=test_file, columns={"text": "review", "label": "stars"})
    assert metrics["examples"] == len(frame) and metrics["split"] == str(test_file)
    with pytest.raises(RunError, match="is an export"):
        exported.evaluate()


def test_shared_training_settings_reach_every_task(parity, tmp_path):
    """Gradient clipping, weight averaging, back-off and the time budget come
    from the shared TrainingConfig: a task that declares nothing about them has them."""
    import keras
    import pandas as pd

    task = tasks.get("parity")
    training = base.TrainingConfig(epochs=3, clip_norm=0.5, ema_momentum=0.9, lr_backoff=0.5, learning_rate=0.01)
    config = ParityConfig(training=training)
    rate, factor = task.schedule(config)
    assert factor == 0.5 and [rate(epoch) for epoch in range(3)] == [0.01] * 3
    seen = {}
    real = keras.Model.fit

    def spy(model, *args, **kwargs):
        seen["clipnorm"], seen["ema"] = model.optimizer.global_clipnorm, model.optimizer.ema_momentum
        return real(model, *args, **kwargs)

    keras.Model.fit = spy
    try:
        run = runs.train(task, config, base.DataSource(train_file=parity), tmp_path / "run", verbose=0, say=print)
    finally:
        keras.Model.fit = real
    assert seen == {"clipnorm": 0.5, "ema": 0.9}
    history = pd.read_csv(run.path / "history.csv")
    assert "learning_rate" in history  # the back-off schedule ran and logged each epoch's rate
    summary = json.loads((run.path / "training.json").read_text())
    assert summary["epochs"] == len(history) == 3


def test_data_in_memory_hold_out_validation_as_files_do():
    lines = [f"line {i}" for i in range(40)]
    splits = tasks.get("language-model").from_frames(lines)
    assert (splits.train, splits.validation) == (lines[:38], lines[38:])  # the last 5 %, in order, like a text file
    with pytest.raises(DataError, match="the training data has too few lines"):
        tasks.get("language-model").from_frames(["only one"])
