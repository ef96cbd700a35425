"""What goes wrong in real use, kept fixed: bad config values, training that
diverges, kills and damaged files in a run directory, two writers at once,
and exports killed midway. Tiny sentiment runs stand in for every task: the
code under test (nlptool.runs, nlptool.training, nlptool.export) is shared."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # `import nlptool` loads TensorFlow

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from nlptool import config as config_lib
from nlptool import export as export_lib
from nlptool import files, runs, tasks, training
from nlptool.cli import main
from nlptool.errors import FolderBusy, RunError
from nlptool.tasks.base import Splits

TASK = tasks.get("sentiment")
POSITIVE = ["good fun", "great cast", "lovely film", "fun and good", "great story", "lovely and great"]
NEGATIVE = ["dull plot", "bad acting", "boring film", "dull and bad", "awful story", "boring and awful"]


def config(**changes):
    overrides = {
        "model.units": 4,
        "model.embedding_dim": 4,
        "tokenizer.vocab_size": 40,
        "training.batch_size": 4,
        "training.epochs": 3,
        "training.early_stopping_patience": 10,
        **changes,
    }
    return config_lib.resolve(TASK.config_class, [], [f"{k}={v}" for k, v in overrides.items()])


def data():
    frame = pd.DataFrame({"text": POSITIVE * 2 + NEGATIVE * 2, "label": ["pos"] * 12 + ["neg"] * 12})
    validation = frame.iloc[[0, 1, 12, 13]].reset_index(drop=True)
    return Splits(frame, validation)


def train(run_dir, said=None, **changes):
    return runs.train(TASK, config(**changes), data(), run_dir, verbose=0, say=([] if said is None else said).append)


def weights(run_dir):
    return runs.Run.open(run_dir).load().model.get_weights()


def assert_same_weights(first, second):
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


# === config values: one line naming the key, before anything is written ===


@pytest.mark.parametrize(
    ("task", "key", "value", "message"),
    [
        ("sentiment", "model.units", 0, "units must be >= 1, not 0"),
        ("sentiment", "training.batch_size", 0, "batch_size must be >= 1"),
        ("sentiment", "training.epochs", 0, "epochs must be >= 1"),
        ("sentiment", "model.dropout", 2, r"dropout must be in \[0, 1\), not 2.0"),
        ("sentiment", "training.learning_rate", ".nan", "learning_rate must be >= 0, not nan"),
        ("sentiment", "training.validation_fraction", 1.5, r"validation_fraction must be in \(0, 1\)"),
        ("sentiment", "tokenizer.max_length", 0, "max_length must be >= 1"),
        ("sentiment", "tokenizer.vocab_size", 4, "vocab_size must be >= 5"),
        ("language-model", "generation.temperature", -1, "temperature must be >= 0"),
        ("language-model", "generation.top_p", 1.5, r"top_p must be in \(0, 1\]"),
        ("language-model", "training.window", 0, "window must be >= 1"),
        ("translation", "model.decoder_units", 0, "decoder_units must be >= 1"),
        ("translation", "decoding.length_penalty", -1, "length_penalty must be >= 0"),
        ("summarization", "decoding.beam_width", 0, r"beam_width must be in \[1, 64\]"),
        ("translation", "decoding.beam_width", 65, r"beam_width must be in \[1, 64\]"),
        ("language-model", "generation.max_new_tokens", 1025, r"max_new_tokens must be in \[1, 1024\]"),
        ("summarization", "training.label_smoothing", 1, r"label_smoothing must be in \[0, 1\)"),
        ("summarization", "evaluation.lead_words", 0, "lead_words must be >= 1"),
    ],
)
def test_a_config_value_out_of_range_is_refused_naming_it(task, key, value, message):
    section = key.split(".")[0]
    with pytest.raises(config_lib.ConfigError, match=rf"`{section}` in --set: {message}"):
        config_lib.resolve(tasks.get(task).config_class, [], [f"{key}={value}"])


def test_the_command_line_reports_a_bad_value_in_one_line_with_exit_code_2(tmp_path, capsys):
    train_file = tmp_path / "train.csv"
    data().train.to_csv(train_file, index=False)
    run = tmp_path / "run"
    assert main(["train", "sentiment", "--train-file", str(train_file), "--epochs", "0", "--run-dir", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["nlptool: error: Invalid value for `training` in --set: epochs must be >= 1, not 0."]
    assert not run.exists()


# === divergence: a failure, with the last good state kept ===


def test_a_run_that_diverges_in_its_first_epoch_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(training.Diverged, match=r"the loss was (nan|inf) at batch \d+ of epoch 1\. No epoch finished"):
        train(tmp_path / "run", **{"training.learning_rate": 1e37})  # weights past float32's range
    assert not (tmp_path / "run").exists()


class PoisonAtEpoch(keras.callbacks.Callback):
    """Sets a weight to NaN as epoch `epoch` begins: a divergence at a known point."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.trainable_variables[0].assign(np.full(self.model.trainable_variables[0].shape, np.nan))


@pytest.fixture
def diverging_at_epoch(monkeypatch):
    real = training.callbacks
    monkeypatch.setattr(training, "callbacks", lambda *args, **kwargs: real(*args, **kwargs) + [PoisonAtEpoch(1)])


def test_a_run_that_diverges_later_fails_and_keeps_its_last_good_state(tmp_path, diverging_at_epoch):
    run_dir = tmp_path / "run"
    with pytest.raises(training.Diverged, match=r"the loss was nan at batch 1 of epoch 2\. The best checkpoint"):
        train(run_dir)
    run = runs.Run.open(run_dir)
    assert not run.finished  # no training.json: nothing reports success
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1] and np.isfinite(history["loss"][0]) and history.iloc[1, 1:].isna().all()
    assert all(np.isfinite(w).all() for w in run.load().model.get_weights())  # the best checkpoint is epoch 1's
    generations = json.loads((run_dir / "backup" / "state.json").read_text())["generations"]
    assert [g["epoch"] for g in generations] == [1]  # the backup holds the epoch before
    # the same request resumes from there, diverges again, and the history grows no duplicate row
    with pytest.raises(training.Diverged):
        train(run_dir)
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0, 1]


# === kills and damaged files ===


def interrupted_run(run_dir, interrupted_at_epoch):
    with interrupted_at_epoch(2):
        train(run_dir)
    return run_dir / "backup"


def test_a_damaged_latest_backup_falls_back_to_the_one_before_and_resumes_exactly(tmp_path, interrupted_at_epoch):
    train(tmp_path / "straight")
    backup = interrupted_run(tmp_path / "run", interrupted_at_epoch)
    latest = backup / "epoch-2.weights.h5"
    latest.write_bytes(latest.read_bytes()[:100])  # what a disk error or a torn copy leaves
    said = []
    train(tmp_path / "run", said)
    assert any("backup of epoch 2" in line and "does not match its checksum" in line for line in said), said
    assert "Resuming from the backup of epoch 1 instead." in said
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "run" / "history.csv"), pd.read_csv(tmp_path / "straight" / "history.csv")
    )
    assert_same_weights(weights(tmp_path / "run"), weights(tmp_path / "straight"))


@pytest.mark.parametrize("damage", ["empty state", "truncated seeds", "missing weights"])
def test_every_backup_file_damaged_in_turn_is_detected(tmp_path, interrupted_at_epoch, damage):
    backup = interrupted_run(tmp_path / "run", interrupted_at_epoch)
    if damage == "empty state":  # unreadable record: the generations on disk are tried, newest first
        (backup / "state.json").write_text("")
    elif damage == "truncated seeds":
        (backup / "epoch-2.seeds.npz").write_bytes(b"PK")
    else:
        (backup / "epoch-2.weights.h5").unlink()
    said = []
    train(tmp_path / "run", said)
    expected = {
        "empty state": "state.json is damaged",
        "truncated seeds": "epoch-2.seeds.npz does not match its checksum",
        "missing weights": "epoch-2.weights.h5 is missing",
    }[damage]
    assert any(expected in line for line in said), said
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [0, 1, 2]


def test_a_backup_with_no_sound_generation_is_refused(tmp_path, interrupted_at_epoch):
    backup = interrupted_run(tmp_path / "run", interrupted_at_epoch)
    for path in backup.glob("epoch-*.weights.h5"):
        path.write_bytes(b"")
    with pytest.raises(RunError, match="No generation of the backup .* can be loaded .*; pass --overwrite"):
        train(tmp_path / "run")


def test_a_damaged_checkpoint_is_reported_not_a_traceback(tmp_path):
    train(tmp_path / "run", **{"training.epochs": 1})
    (tmp_path / "run" / runs.CHECKPOINT).write_bytes(b"\x89HDF\r\n")
    with pytest.raises(RunError, match=r"best.weights.h5 cannot be loaded .* Train the run again with --overwrite"):
        runs.Run.open(tmp_path / "run").load()


def test_a_checkpoint_is_replaced_whole(tmp_path, monkeypatch):
    """A save that dies midway leaves the previous best, and no temporary file."""
    train(tmp_path / "run", **{"training.epochs": 1})
    checkpoint = tmp_path / "run" / runs.CHECKPOINT
    before = checkpoint.read_bytes()
    model = runs.Run.open(tmp_path / "run").load().model

    def dies_midway(path, overwrite=True):
        with open(path, "wb") as stream:
            stream.write(before[:50])
        raise OSError("No space left on device")

    monkeypatch.setattr(model, "save_weights", dies_midway)
    saver = training.BestCheckpoint(checkpoint, "val_accuracy", "max")
    saver.set_model(model)
    with pytest.raises(OSError, match="No space left"):
        saver.on_epoch_end(0, {"val_accuracy": 0.5})
    assert checkpoint.read_bytes() == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.weights.h5"]


# === one writer at a time ===


def test_a_run_directory_in_use_is_refused_for_training_and_export(tmp_path):
    train(tmp_path / "run", **{"training.epochs": 1})
    with files.locked(tmp_path / "run", "training"):
        with pytest.raises(FolderBusy, match=rf"Cannot start training: .*run is in use by process {os.getpid()} \("):
            train(tmp_path / "run", **{"training.epochs": 1})
        with pytest.raises(FolderBusy, match="in use"):
            runs.Run.open(tmp_path / "run").export()
    assert not (tmp_path / "run" / "export").exists()


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path):
    """Another process holding the lock refuses this one; once it is killed, the lock is free."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from nlptool.files import locked
                with locked({str(folder)!r}, "training"):
                    print("held", flush=True)
                    time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=rf"in use by process {holder.pid} \(python -c"):
            with files.locked(folder, "exporting"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with files.locked(folder, "exporting"):  # a killed holder leaves no stale lock, and the lock leaves no file
        assert list(folder.iterdir()) == []


def test_overwrite_empties_the_run_directory_it_holds_the_lock_of(tmp_path):
    train(tmp_path / "run", **{"training.epochs": 1})
    (tmp_path / "run" / "notes.txt").write_text("an earlier run's file")
    runs.train(TASK, config(**{"training.epochs": 1}), data(), tmp_path / "run", overwrite=True, verbose=0, say=id)
    assert not (tmp_path / "run" / "notes.txt").exists() and runs.Run.open(tmp_path / "run").finished


def test_an_export_killed_midway_is_cleaned_up_by_the_next(tmp_path):
    base = tmp_path / "export"
    (base / ".3.partial-x1y2").mkdir(parents=True)  # killed while saving version 3
    (base / ".3.partial-x1y2" / "saved_model.pb").write_bytes(b"half")
    (base / ".2.previous").mkdir()  # killed between moving version 2 aside and putting its replacement
    (base / ".2.previous" / "saved_model.pb").write_bytes(b"version 2")
    (base / "1").mkdir()
    (base / "1" / "saved_model.pb").write_bytes(b"version 1")
    (base / ".1.previous").mkdir()  # killed after the replacement was in place
    export_lib._clean_up(base)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    assert (base / "2" / "saved_model.pb").read_bytes() == b"version 2"  # the version put back
    assert (base / "1" / "saved_model.pb").read_bytes() == b"version 1"


def test_the_command_line_reads_a_tab_delimiter_spelled_tab(tmp_path, capsys):
    path = tmp_path / "reviews.csv"  # tab-separated under a .csv name
    path.write_text("text\tlabel\ngood fun\tpos\ngreat cast\tpos\n")
    args = ["train", "sentiment", "--train-file", str(path), "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    assert "--delimiter tab on the command line" in capsys.readouterr().err
    assert main([*args, "--delimiter", "tab"]) == 2  # now read as two columns: the labels are the next problem
    assert "column 'label' holds a single class, 'pos'" in capsys.readouterr().err
