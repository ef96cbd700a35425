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
and the epoch number (see `EpochCounter`), the dropout seeds live in the
model's variables, and BackupAndRestore restores weights, optimizer state
and the epoch. Run the same fit again on the same run directory and it
continues where it stopped.
"""

from pathlib import Path

import keras
import tensorflow as tf

CHECKPOINT = "checkpoints/best.weights.h5"


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
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / CHECKPOINT), monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
    ]
