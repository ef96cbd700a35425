"""Fit wiring shared by the tasks: the run directory and its callbacks.

A run directory holds everything about one training run:

    config.yaml            the resolved configuration
    tokenizer.json         the tokeniser (vocabulary or model included)
    checkpoints/           best.weights.h5 (best validation score so far)
    backup/                BackupAndRestore state: an interrupted fit resumes here
    logs/                  TensorBoard
    history.csv            per-epoch losses and metrics
    metrics.json           evaluation, written by `evaluate`
    export/                the SavedModel, written by `export`

Resuming is exact: the data order of every epoch is a function of the seed
and the epoch number (see `EpochCounter`), and the backup holds weights,
optimizer state, the epoch and the states of the dropout seed generators
(see `ExactBackupAndRestore`). Run the same fit again on the same run directory and it
continues where it stopped.
"""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

CHECKPOINT = "checkpoints/best.weights.h5"
CONFIG_FILE = "config.yaml"


class RunError(RuntimeError):
    """A run directory is missing, incomplete or does not fit the request."""


def require_files(run_dir, names, kind):
    """Raise RunError unless `run_dir` holds every file in `names`; `kind`
    names the run in the message ("sentiment", "language-model")."""
    missing = [name for name in names if not (Path(run_dir) / name).is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a finished {kind} run: it lacks {missing}.")


class EpochCounter(keras.callbacks.Callback):
    """Keeps `variable` equal to the epoch about to run.

    The input pipeline derives each epoch's shuffling from it
    (`nlptool.data.pipeline.make_dataset(epoch=...)`), so epoch k is shuffled
    the same way whether the run got there directly or resumed after an
    interruption.
    """

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


class ExactBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that also keeps the random state of the model.

    Keras's backup holds the weights and the optimizer but not the states of
    the layers' seed generators, so a resumed run would draw other dropout
    masks than an uninterrupted one. This saves them beside the backup at
    the end of each epoch and restores them with it.
    """

    def __init__(self, backup_dir, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self._seed_path = Path(backup_dir) / "seed_states.npz"

    def _seed_states(self):
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._seed_path.is_file() and Path(self._weights_path).is_file():
            saved = np.load(self._seed_path)
            states = self._seed_states()
            if len(saved.files) != len(states):
                raise ValueError(
                    f"The backup in {self._seed_path.parent} holds {len(saved.files)} seed states, the model "
                    f"{len(states)}: it was written by a different model."
                )
            for i, variable in enumerate(states):
                variable.assign(saved[f"state_{i}"])

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        # by position: layer names (and so variable paths) differ between processes
        states = {f"state_{i}": np.asarray(v) for i, v in enumerate(self._seed_states())}
        staging = self._seed_path.with_suffix(".tmp.npz")
        np.savez(staging, **states)
        staging.replace(self._seed_path)


def epoch_variable():
    """The variable an EpochCounter sets and a pipeline reads."""
    return tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")


def callbacks(run_dir, epoch, monitor="val_accuracy", mode="max", patience=2):
    """The standard callbacks of a run in `run_dir`.

    Args:
        run_dir: the run directory.
        epoch: the variable from `epoch_variable()` that the pipeline reads.
        monitor: validation metric for checkpoints and early stopping.
        mode: "max" or "min" for `monitor`.
        patience: epochs without improvement before early stopping.
    """
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return [
        EpochCounter(epoch),
        # first, so that a resumed run restores before anything else looks at the model
        ExactBackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / CHECKPOINT), monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
    ]
