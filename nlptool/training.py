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
(see `ExactBackupAndRestore`); the best validation value and patience of
the checkpoint and early stopping go with it (see `ResumeBestSoFar`). Run
the same fit again on the same run directory and it continues where it
stopped, with the same best checkpoint as an uninterrupted run.
"""

import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlptool import compat
from nlptool.errors import RunError
from nlptool.files import write_json

CHECKPOINT = "checkpoints/best.weights.h5"
CONFIG_FILE = "config.yaml"


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
        if self._seed_path.is_file() and Path(compat.backup_weights_path(self)).is_file():
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


class ResumeBestSoFar(keras.callbacks.Callback):
    """Keeps the best-so-far of ModelCheckpoint and EarlyStopping across a resume.

    Both callbacks hold their best validation value, their patience count
    and (EarlyStopping) the best weights in memory only, so a resumed fit
    would start them afresh: the next epoch would overwrite a better
    checkpoint, and patience would restart. This writes their state beside
    the backup at the end of each epoch (after theirs: place it after them)
    and hands it back when a run resumes.
    """

    def __init__(self, backup_dir, checkpoint, early_stopping):
        super().__init__()
        self.path = Path(backup_dir) / "best_so_far.json"
        self.weights_path = Path(backup_dir) / "best_weights.npz"
        self.checkpoint, self.early_stopping = checkpoint, early_stopping

    def on_train_begin(self, logs=None):
        self._starting = True

    def on_epoch_begin(self, epoch, logs=None):
        # the first epoch of this fit, after every callback's on_train_begin (the backup's restore included)
        if not self._starting:
            return
        self._starting = False
        if epoch == 0 or not self.path.is_file():
            return
        state = json.loads(self.path.read_text(encoding="utf-8"))
        if state["epoch"] != epoch - 1:  # written for another epoch than the backup's: start afresh
            return
        stopping = self.early_stopping
        self.checkpoint.best = state["checkpoint_best"]
        stopping.best, stopping.wait, stopping.best_epoch = state["best"], state["wait"], state["best_epoch"]
        if self.weights_path.is_file():
            saved = np.load(self.weights_path)
            stopping.best_weights = [saved[f"weight_{i}"] for i in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        def number(value):
            return None if value is None else float(value)

        stopping = self.early_stopping
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if stopping.best_weights is not None and stopping.best_epoch == epoch:  # a new best: keep its weights
            staging = self.weights_path.with_suffix(".tmp.npz")
            np.savez(staging, **{f"weight_{i}": w for i, w in enumerate(stopping.best_weights)})
            staging.replace(self.weights_path)
        state = {
            "epoch": epoch,
            "checkpoint_best": number(self.checkpoint.best),
            "best": number(stopping.best),
            "wait": int(stopping.wait),
            "best_epoch": int(stopping.best_epoch),
        }
        write_json(self.path, state)


class ScheduleWithBackOff(keras.callbacks.Callback):
    """Sets the learning rate of each epoch to `schedule(epoch)`; after an
    epoch that ends with the monitored value worse than the best so far,
    loads the best weights back and multiplies the rate by `factor` for the
    rest of the run (once per such epoch). The best value and weights are
    those of `checkpoint`, the run's ModelCheckpoint (save_best_only).

    An SGD language model at a high rate can leave its basin within one
    epoch (validation perplexity 185 to 925 in a pass over IMDB) and does not
    find its way back: going on from there wastes the run, where the best
    weights at a lower rate go on learning. With `factor` None the rate
    follows `schedule` alone and the run goes on from whatever it reached.
    Each epoch's rate is logged as `learning_rate` (history.csv).

    Place it before the backup and the checkpoint: the backup then holds the
    weights this loaded back, and the checkpoint's best is still that of
    the earlier epochs. The number of back-offs is kept beside the backup
    (backup_dir/back_off.json), and ResumeBestSoFar keeps the checkpoint's
    best, so a resumed run goes on at the same rate.
    """

    def __init__(self, schedule, factor, checkpoint, backup_dir):
        super().__init__()
        if factor is not None and not 0 < factor < 1:
            raise ValueError(f"The back-off factor must be between 0 and 1 (exclusive), not {factor}.")
        self.schedule, self.factor, self.checkpoint = schedule, factor, checkpoint
        self.path = Path(backup_dir) / "back_off.json"

    def on_train_begin(self, logs=None):
        self._starting, self.back_offs = True, 0

    def rate(self, epoch):
        return float(self.schedule(epoch)) * (self.factor or 1.0) ** self.back_offs

    def on_epoch_begin(self, epoch, logs=None):
        if self._starting:  # a resumed run takes back its state if it was written with the backup's epoch
            self._starting = False
            if epoch > 0 and self.path.is_file():
                state = json.loads(self.path.read_text(encoding="utf-8"))
                if state["epoch"] == epoch - 1:
                    self.back_offs = state["back_offs"]
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = self.rate(epoch)
        value, best = float(logs[self.checkpoint.monitor]), self.checkpoint.best  # best: None before any save
        improved = best is None or (value < best if self.checkpoint.mode == "min" else value > best)
        if not improved and value != best and self.factor is not None:  # worse, or inf or NaN
            self.model.load_weights(self.checkpoint.filepath)
            self.back_offs += 1
        write_json(self.path, {"epoch": epoch, "back_offs": self.back_offs})


class SwapAveragedWeights(keras.callbacks.Callback):
    """With an optimizer that keeps a moving average of the weights
    (`use_ema=True`), puts the average in the model for validation and from
    the end of each epoch to the beginning of the next, so that the
    checkpoint and early stopping keep the average (and early stopping puts
    the best one back at the end), while training goes on from the weights
    as trained. Without `use_ema` it does nothing.

    Keras's SwapEMAWeights does the same, but its TensorFlow path swaps by
    sums and differences in place, which rounds the weights in their last
    bit at every swap: training then drifts from the same run without
    averaging. These swaps copy, so averaging leaves training exact.
    Place it after the backup, which then holds the trained weights and the
    average each in its own place, and before the checkpoint and early
    stopping.
    """

    def on_train_begin(self, logs=None):
        self._active = bool(getattr(self.model.optimizer, "use_ema", False))
        self._swapped = False

    def _put(self, average):
        if not self._active or self._swapped == average:
            return
        optimizer = self.model.optimizer
        averages = compat.moving_average_variables(optimizer)  # Keras keeps no public handle
        for variable, kept in zip(compat.trainable_variables_of(optimizer), averages, strict=True):
            trained = variable.numpy()
            variable.assign(kept)
            kept.assign(trained)
        self._swapped = average

    def on_test_begin(self, logs=None):
        self._put(average=True)

    def on_test_end(self, logs=None):
        self._put(average=False)  # the backup, before this at the end of the epoch, saves the trained weights

    def on_epoch_end(self, epoch, logs=None):
        self._put(average=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._put(average=False)


class CoveragePhase(keras.callbacks.Callback):
    """The coverage schedule of See et al. (2017): train without the
    coverage loss, then for a short final phase with it.

    The first phase ends after the epoch at which training would otherwise
    stop (early stopping, the time budget), or once only `epochs` epochs of
    the budget are left (`total_epochs`, and `max_minutes` from the mean
    epoch time). The phase then starts from the first phase's best weights
    (the checkpoint), with the model's `coverage_weight` set to `weight`,
    and runs `epochs` epochs; the checkpoint and early stopping choose among
    its epochs only. Each epoch logs `coverage_weight`. A stop after a
    NaN loss (TerminateOnNaN) is left alone.

    Place it after the checkpoint, early stopping and the time budget, and
    before ResumeBestSoFar. The phase's first epoch is kept beside the
    backup, and the best weights are loaded at the beginning of that epoch
    (after the backup restores), so a resumed run goes on exactly.
    """

    def __init__(self, weight, epochs, total_epochs, checkpoint, early_stopping, backup_dir, max_minutes=None):
        super().__init__()
        if not epochs >= 1:
            raise ValueError(f"The coverage phase needs at least one epoch, got {epochs}.")
        self.weight, self.epochs, self.total_epochs = float(weight), int(epochs), int(total_epochs)
        self.checkpoint, self.early_stopping = checkpoint, early_stopping
        self.seconds = None if max_minutes is None else 60 * max_minutes
        self.path = Path(backup_dir) / "coverage_phase.json"

    def on_train_begin(self, logs=None):
        self.start, self._starting = None, True
        self.started_at, self.epochs_here = time.monotonic(), 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._starting:
            self._starting = False
            if epoch > 0 and self.path.is_file():
                state = json.loads(self.path.read_text(encoding="utf-8"))
                if state["epoch"] == epoch - 1:
                    self.start = state["start"]
        if self.start == epoch and Path(self.checkpoint.filepath).is_file():
            self.model.load_weights(self.checkpoint.filepath)  # the first phase's best
        in_phase = self.start is not None and epoch >= self.start
        self.model.coverage_weight.assign(self.weight if in_phase else 0.0)

    def _budget_left_for_phase(self, epoch):
        if epoch + 1 + self.epochs >= self.total_epochs:
            return False
        if self.seconds is None:
            return True
        elapsed = time.monotonic() - self.started_at
        return elapsed + (self.epochs + 1) * elapsed / self.epochs_here <= self.seconds

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_here += 1
        logs = logs if logs is not None else {}
        logs["coverage_weight"] = float(self.model.coverage_weight.numpy())
        diverged = not np.isfinite(float(logs.get("loss", 0.0)))  # TerminateOnNaN's stop stands
        if self.start is None and not diverged and (self.model.stop_training or not self._budget_left_for_phase(epoch)):
            self.start = epoch + 1
            self.model.stop_training = False
            self.checkpoint.best = None  # choose among the phase's epochs
            stopping = self.early_stopping
            stopping.best, stopping.wait, stopping.best_weights = None, 0, None
            stopping.best_epoch, stopping.stopped_epoch = epoch + 1, 0
        elif self.start is not None and epoch + 1 >= self.start + self.epochs:
            self.model.stop_training = True
        write_json(self.path, {"epoch": epoch, "start": self.start})


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch when another epoch would pass
    `minutes` of training in this process (from the mean epoch time so far)."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = minutes * 60

    def on_train_begin(self, logs=None):
        self.start, self.epochs = time.monotonic(), 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        elapsed = time.monotonic() - self.start
        if elapsed + elapsed / self.epochs > self.seconds:
            self.model.stop_training = True


def epochs_run(run_dir):
    """Epochs trained in `run_dir` so far, over every fit that resumed it (the rows of history.csv)."""
    path = Path(run_dir) / "history.csv"
    return max(0, len(path.read_text(encoding="utf-8").splitlines()) - 1) if path.is_file() else 0


def epoch_variable():
    """The variable an EpochCounter sets and a pipeline reads."""
    return tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")


def callbacks(
    run_dir,
    epoch,
    monitor="val_accuracy",
    mode="max",
    patience=2,
    schedule=None,
    back_off=None,
    max_minutes=None,
    phase=None,
):
    """The standard callbacks of a run in `run_dir`.

    Args:
        run_dir: the run directory.
        epoch: the variable from `epoch_variable()` that the pipeline reads.
        monitor: validation metric for checkpoints and early stopping.
        mode: "max" or "min" for `monitor`.
        patience: epochs without improvement before early stopping.
        schedule: the learning rate of each epoch, `schedule(epoch)`
            (None: the optimizer's own).
        back_off: with `schedule`, the factor of `ScheduleWithBackOff`
            (None: none).
        max_minutes: the time budget (`TimeBudget`), None: none.
        phase: None, or `phase(checkpoint, early_stopping, backup_dir)` ->
            a callback that acts on their decisions (`CoveragePhase`).

    With an optimizer that keeps a moving average of the weights
    (`use_ema`), validation, the checkpoint and early stopping see the
    average, and the backup and training the weights as trained (see
    `SwapAveragedWeights`).
    """
    run_dir = Path(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(run_dir / CHECKPOINT), monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True
    )
    stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True)
    rate = []
    if schedule is not None:
        # before the backup, which then saves the weights it may load back at the end of an epoch
        rate = [ScheduleWithBackOff(schedule, back_off, checkpoint, run_dir / "backup")]
    elif back_off is not None:
        raise ValueError("A back-off needs a schedule of learning rates to act on.")
    return [
        EpochCounter(epoch),
        *rate,
        # first to restore (on_train_begin), so that a resumed run restores before anything else looks at the model
        ExactBackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.TerminateOnNaN(),
        SwapAveragedWeights(),  # after the backup
        checkpoint,
        stopping,
        *([TimeBudget(max_minutes)] if max_minutes is not None else []),
        *([phase(checkpoint, stopping, run_dir / "backup")] if phase is not None else []),
        ResumeBestSoFar(run_dir / "backup", checkpoint, stopping),  # after the two it keeps
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
    ]


# === The training loop of every task ===

TRAINING_FILE = "training.json"  # written when training ends: a run with it is finished


def optimizer(config, kind="adam"):
    """The optimizer of a `TrainingConfig`: Adam (or SGD) at its rate, with
    its gradient clipping and weight averaging."""
    options = {"global_clipnorm": config.clip_norm}
    if config.ema_momentum is not None:
        options.update(use_ema=True, ema_momentum=config.ema_momentum)
    if kind == "sgd":
        return keras.optimizers.SGD(config.learning_rate, **options)
    if kind == "adam":
        return keras.optimizers.Adam(config.learning_rate, **options)
    raise ValueError(f"Received an invalid value for argument `kind`, expected 'adam' or 'sgd', got {kind!r}.")


def fit(model, batches, run_dir, config, epoch, monitor, mode, schedule=None, back_off=None, verbose=2):
    """Train the compiled `model` on `batches` (a `tasks.base.Batches`) into
    `run_dir` with the standard callbacks, the time budget of `config` (a
    `TrainingConfig`) and exact resume; then write training.json (seconds of
    this process, epochs of the run so far, and `batches.info`)."""
    run_callbacks = callbacks(
        run_dir,
        epoch,
        monitor=monitor,
        mode=mode,
        patience=config.early_stopping_patience,
        schedule=schedule,
        back_off=back_off,
        max_minutes=config.max_minutes,
        phase=batches.phase,
    )
    started = time.monotonic()
    model.fit(
        batches.train,
        validation_data=batches.validation,
        epochs=config.epochs,
        callbacks=run_callbacks,
        shuffle=False,  # the pipelines order the data, by (seed, epoch)
        verbose=verbose,
        **batches.fit_options,
    )
    summary = {"seconds": time.monotonic() - started, "epochs": epochs_run(run_dir), **batches.info}
    write_json(Path(run_dir) / TRAINING_FILE, summary)
    return summary
