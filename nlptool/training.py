"""Fit wiring shared by the tasks: the run directory and its callbacks.

A run directory holds everything about one training run:

    config.yaml            the resolved configuration
    tokenizer.json         the tokeniser (vocabulary or model included)
    checkpoints/           best.weights.h5 (best validation score so far)
    backup/                the state an interrupted fit resumes from (see `Backup`)
    logs/                  TensorBoard
    history.csv            per-epoch losses and metrics
    metrics.json           evaluation, written by `evaluate`
    export/                the SavedModel, written by `export`

Resuming is exact: the data order of every epoch is a function of the seed
and the epoch number (see `EpochCounter`), and the backup holds weights,
optimizer state, the epoch and the states of the dropout seed generators
(see `Backup`); the best validation value and patience of
the checkpoint and early stopping go with it (see `ResumeBestSoFar`). Run
the same fit again on the same run directory and it continues where it
stopped, with the same best checkpoint as an uninterrupted run.

Every file of the backup and the checkpoint is written to a temporary file
and renamed into place, so a kill at any moment leaves the last good copy.
A loss that stops being finite ends the fit with `Diverged` (see
`StopOnNonFinite`), keeping the last good backup and checkpoint.
"""

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlptool import compat, distribute
from nlptool.distribute import SharedClock
from nlptool.errors import RunError
from nlptool.files import replacing, sha256, write_atomically, write_json

CHECKPOINT = "checkpoints/best.weights.h5"
CONFIG_FILE = "config.yaml"


class Diverged(RunError):
    """Training stopped because the loss stopped being finite."""

    def __init__(self, run_dir, epoch, batch, loss, checkpoint):
        kept = (
            "The best checkpoint of the epochs before is kept: evaluate and export use it."
            if checkpoint
            else "No epoch finished with a finite loss, so there is no checkpoint."
        )
        super().__init__(
            f"Training in {run_dir} diverged: the loss was {loss} at batch {batch + 1} of epoch {epoch + 1}. "
            f"{kept} Lower training.learning_rate (or set training.clip_norm) and train again with --overwrite."
        )


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


def finite_loss(logs):
    """Whether an epoch's logs hold a finite training loss (see `StopOnNonFinite`)."""
    return bool(np.isfinite(float((logs or {}).get("loss", 0.0))))


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not finite, and
    records where in `diverged` ((epoch, batch, loss), None while training
    is sound). The epoch it stops in ends with every logged value NaN, so
    that no later callback takes it for an improvement (its validation
    accuracy may look fine); the backup then keeps the last good state.
    Keras's TerminateOnNaN stops too, but fit returns as if training had
    finished. Place it first."""

    def __init__(self):
        super().__init__()
        self.diverged, self._epoch = None, 0

    def on_train_begin(self, logs=None):
        self.diverged, self._epoch = None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and self.diverged is None and not np.isfinite(float(loss)):
            self.diverged = (self._epoch, batch, float(loss))
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is not None and self.diverged[0] == epoch and logs is not None:
            logs.update((key, float("nan")) for key in list(logs))


class Backup(keras.callbacks.Callback):
    """The state an interrupted fit resumes from, in `folder`, written whole
    or not at all.

    At the end of each epoch with a finite loss it writes a generation: the
    weights with the optimizer's state (`epoch-N.weights.h5`, N the epochs
    done) and the states of the layers' seed generators (`epoch-N.seeds.npz`;
    Keras's BackupAndRestore keeps no random state, so a resumed run would
    draw other dropout masks), each to a temporary file renamed into place.
    The generation counts once `state.json`, renamed into place too, names
    them with their SHA-256: `CommitBackup`, the last callback of the
    epoch, writes it, after every other callback has written its own state
    of the epoch (the history row, the best so far), so that a resumed run
    finds all of them for the epoch it resumes after. A kill at any moment
    leaves the generation that state.json named before. The previous
    generation is kept as well: `restore`
    checks the latest and, if it is damaged (a truncated copy, a disk
    error), says so and falls back to the previous one. A normal end of
    training removes the backup; a stop on a non-finite loss keeps it.
    """

    STATE = "state.json"

    def __init__(self, folder, history=None, say=print):
        super().__init__()
        self.folder, self.history, self.say = Path(folder), history, say
        self._previous = None  # the generation restored or last committed: kept beside the next one
        self._pending = None  # the generation written this epoch, until `commit`

    def _seed_states(self, model):
        return [v for v in model.variables if v.path.endswith("seed_generator_state")]

    def _generations(self):
        """The generations to try, newest first: those state.json names (with
        their checksums), or if it is unreadable every one on disk (without)."""
        path = self.folder / self.STATE
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["generations"]
            except (ValueError, KeyError, TypeError):
                self.say(f"{path} is damaged; trying the generations of the backup on disk.")
        epochs = sorted(
            int(p.name[len("epoch-") : -len(".weights.h5")]) for p in self.folder.glob("epoch-*.weights.h5")
        )
        return [self._generation(epoch) for epoch in reversed(epochs)]

    @staticmethod
    def _generation(epoch):
        return {"epoch": epoch, "weights": f"epoch-{epoch}.weights.h5", "seeds": f"epoch-{epoch}.seeds.npz"}

    def restore(self, model, epoch=None):
        """Load the newest sound generation into `model` (built and
        compiled), or the one of `epoch` (0: none, start afresh); returns
        the epoch to start at (0 when there is none). Rows of the history
        file (`history`, a CSVLogger's) from that epoch on are dropped: they
        are trained again. Workers that resume together and find
        backups of different epochs all take the oldest one (see
        `nlptool.distribute`): each keeps the generation before its newest."""
        if epoch == 0:
            start = 0
        else:
            start = self._restore(model, epoch) if self.folder.is_dir() else 0
        if self.history is not None and Path(self.history).is_file():
            lines = Path(self.history).read_text(encoding="utf-8").splitlines(keepends=True)
            kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < start]
            if kept != lines:
                write_atomically(self.history, lambda stream: stream.write("".join(kept)))
        return start

    def _restore(self, model, epoch=None):
        generations = self._generations()
        newest = generations[0] if generations else None
        if epoch is not None:
            generations = [g for g in generations if int(g["epoch"]) == epoch]
            if not generations:
                raise RunError(
                    f"The backup in {self.folder} has no generation of epoch {epoch}, which every worker must "
                    "resume from; pass --overwrite (overwrite=True) to train the run afresh."
                )
        problems = []
        for generation in generations:
            problem = self._load(model, generation)
            if problem is None:
                self._previous = generation
                if generation is not newest:
                    self.say(f"Resuming from the backup of epoch {generation['epoch']} instead.")
                return int(generation["epoch"])
            problems.append(f"epoch {generation['epoch']}: {problem}")
            self.say(f"The backup of epoch {generation['epoch']} in {self.folder} is damaged ({problem}).")
        if generations:
            raise RunError(
                f"No generation of the backup in {self.folder} can be loaded ({'; '.join(problems)}); "
                "pass --overwrite (overwrite=True) to train the run afresh."
            )
        return 0

    def _damage(self, generation):
        """What is wrong with the files of one generation (missing, or not
        matching its checksum), or None."""
        for key in ("weights", "seeds"):
            path = self.folder / generation[key]
            if not path.is_file():
                return f"{path.name} is missing"
            expected = generation.get(f"{key}_sha256")
            if expected is not None and sha256(path) != expected:
                return f"{path.name} does not match its checksum"
        return None

    def newest_sound_epoch(self):
        """The epoch of the newest generation whose files are whole, without
        loading it (0: none), for workers to agree on where to resume."""
        if not self.folder.is_dir():
            return 0
        return max((int(g["epoch"]) for g in self._generations() if self._damage(g) is None), default=0)

    def _load(self, model, generation):
        """Load one generation; the problem that prevents it, or None."""
        damage = self._damage(generation)
        if damage is not None:
            return damage
        try:
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(self.folder / generation["weights"])
            saved = np.load(self.folder / generation["seeds"])
            states = self._seed_states(model)
            if len(saved.files) != len(states):
                return f"it holds {len(saved.files)} seed states, the model {len(states)}: another model wrote it"
            for i, variable in enumerate(states):  # by position: variable paths differ between processes
                variable.assign(saved[f"state_{i}"])
        except Exception as error:  # noqa: BLE001 (h5py, zipfile and Keras each raise their own kinds)
            return f"{type(error).__name__}: {error}"
        return None

    def on_train_begin(self, logs=None):
        self._sound, self._pending = True, None

    def on_epoch_end(self, epoch, logs=None):
        self._pending = None
        if not finite_loss(logs):
            self._sound = False  # keep the last good generation, and keep it at the end
            return
        generation = self._generation(epoch + 1)
        with replacing(self.folder / generation["weights"]) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        with replacing(self.folder / generation["seeds"]) as temporary:
            np.savez(temporary, **{f"state_{i}": np.asarray(v) for i, v in enumerate(self._seed_states(self.model))})
        for key in ("weights", "seeds"):
            generation[f"{key}_sha256"] = sha256(self.folder / generation[key])
        self._pending = generation

    def commit(self):
        """Name the generation written at the end of this epoch in state.json
        (with the one before it), and remove older files; nothing after an
        epoch with a non-finite loss."""
        generation, self._pending = self._pending, None
        if generation is None:
            return
        previous = self._previous
        kept = [generation] + ([previous] if previous is not None and previous["epoch"] < generation["epoch"] else [])
        self._previous = generation
        write_json(self.folder / self.STATE, {"generations": kept})
        names = {g[key] for g in kept for key in ("weights", "seeds")} | {self.STATE}
        for path in self.folder.glob("epoch-*"):
            if path.name not in names:
                path.unlink()

    def on_train_end(self, logs=None):
        if self._sound:
            shutil.rmtree(self.folder, ignore_errors=True)


class CommitBackup(keras.callbacks.Callback):
    """Commits the generation `backup` (a `Backup`) wrote this epoch. Place it
    last: every callback before it has written its state of the epoch."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        self.backup.commit()


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the weights at the end of every epoch whose `monitor` value is
    the best so far (`mode` "min" or "max"; NaN and infinities never are) to
    `filepath`, to a temporary file renamed into place, so that a kill while
    saving leaves the previous best. `best` is None before the first save."""

    def __init__(self, filepath, monitor, mode):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"Received an invalid value for argument `mode`, expected 'min' or 'max', got {mode!r}.")
        self.filepath, self.monitor, self.mode, self.best = str(filepath), monitor, mode, None

    def improves(self, value):
        value = float(value)
        if not np.isfinite(value):
            return False
        return self.best is None or (value < self.best if self.mode == "min" else value > self.best)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"The checkpoint monitors {self.monitor!r}, which the epoch's logs lack: {sorted(logs)}.")
        if self.improves(logs[self.monitor]):
            with replacing(self.filepath) as temporary:
                self.model.save_weights(temporary, overwrite=True)
            self.best = float(logs[self.monitor])


class EpochStates:
    """A callback's state at the end of each of its last two epochs, in one
    JSON file beside the backup, so that a resumed run takes back the state
    of the epoch its backup holds, also when it falls back to the backup's
    previous generation (see `Backup`)."""

    def __init__(self, path):
        self.path = Path(path)

    def load(self, epoch):
        """The state saved at the end of `epoch`, or None."""
        return self._read().get(str(epoch))

    def save(self, epoch, state):
        kept = {key: value for key, value in self._read().items() if key == str(epoch - 1)}
        write_json(self.path, {**kept, str(epoch): state})

    def _read(self):
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError:  # damaged: as if absent, so the callback starts afresh
            return {}


class ResumeBestSoFar(keras.callbacks.Callback):
    """Keeps the best-so-far of the checkpoint and early stopping across a resume.

    Both callbacks hold their best validation value, their patience count
    and (EarlyStopping) the best weights in memory only, so a resumed fit
    would start them afresh: the next epoch would overwrite a better
    checkpoint, and patience would restart. This writes their state beside
    the backup at the end of each epoch (after theirs: place it after them)
    and hands it back when a run resumes.
    """

    def __init__(self, backup_dir, checkpoint, early_stopping):
        super().__init__()
        self.states = EpochStates(Path(backup_dir) / "best_so_far.json")
        self.weights_path = Path(backup_dir) / "best_weights.npz"
        self.checkpoint, self.early_stopping = checkpoint, early_stopping

    def on_train_begin(self, logs=None):
        self._starting = True

    def on_epoch_begin(self, epoch, logs=None):
        # the first epoch of this fit, after every callback's on_train_begin (the backup's restore included)
        if not self._starting:
            return
        self._starting = False
        state = self.states.load(epoch - 1)
        if state is None:  # a fresh run, or none written for the backup's epoch: start afresh
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

        if not finite_loss(logs):  # the backup keeps the epoch before, and so does this
            return
        stopping = self.early_stopping
        if stopping.best_weights is not None and stopping.best_epoch == epoch:  # a new best: keep its weights
            with replacing(self.weights_path) as temporary:
                np.savez(temporary, **{f"weight_{i}": w for i, w in enumerate(stopping.best_weights)})
        state = {
            "checkpoint_best": number(self.checkpoint.best),
            "best": number(stopping.best),
            "wait": int(stopping.wait),
            "best_epoch": int(stopping.best_epoch),
        }
        self.states.save(epoch, state)


class ScheduleWithBackOff(keras.callbacks.Callback):
    """Sets the learning rate of each epoch to `schedule(epoch)`; after an
    epoch that ends with the monitored value worse than the best so far,
    loads the best weights back and multiplies the rate by `factor` for the
    rest of the run (once per such epoch). The best value and weights are
    those of `checkpoint`, the run's `BestCheckpoint`.

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
        self.states = EpochStates(Path(backup_dir) / "back_off.json")

    def on_train_begin(self, logs=None):
        self._starting, self.back_offs = True, 0

    def rate(self, epoch):
        return float(self.schedule(epoch)) * (self.factor or 1.0) ** self.back_offs

    def on_epoch_begin(self, epoch, logs=None):
        if self._starting:  # a resumed run takes back its state if it was written with the backup's epoch
            self._starting = False
            state = self.states.load(epoch - 1)
            if state is not None:
                self.back_offs = state["back_offs"]
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = self.rate(epoch)
        if not finite_loss(logs):  # training stops here; the backup keeps the epoch before, and so does this
            return
        value, best = float(logs[self.checkpoint.monitor]), self.checkpoint.best  # best: None before any save
        worse = best is not None and not self.checkpoint.improves(value) and value != best  # or inf or NaN
        if worse and self.factor is not None:
            self.model.load_weights(self.checkpoint.filepath)
            self.back_offs += 1
        self.states.save(epoch, {"back_offs": self.back_offs})


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
    non-finite loss (StopOnNonFinite) is left alone. Time is read from
    `clock` (a `nlptool.distribute.SharedClock`; default: this process's).

    Place it after the checkpoint, early stopping and the time budget, and
    before ResumeBestSoFar. The phase's first epoch is kept beside the
    backup, and the best weights are loaded at the beginning of that epoch
    (after the backup restores), so a resumed run goes on exactly.
    """

    def __init__(
        self, weight, epochs, total_epochs, checkpoint, early_stopping, backup_dir, max_minutes=None, clock=None
    ):
        super().__init__()
        self.clock = clock or SharedClock()
        if not epochs >= 1:
            raise ValueError(f"The coverage phase needs at least one epoch, got {epochs}.")
        self.weight, self.epochs, self.total_epochs = float(weight), int(epochs), int(total_epochs)
        self.checkpoint, self.early_stopping = checkpoint, early_stopping
        self.seconds = None if max_minutes is None else 60 * max_minutes
        self.states = EpochStates(Path(backup_dir) / "coverage_phase.json")

    def on_train_begin(self, logs=None):
        self.start, self._starting = None, True
        self.clock.start()
        self.epochs_here = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._starting:
            self._starting = False
            state = self.states.load(epoch - 1)
            if state is not None:
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
        elapsed = self.clock.elapsed()
        return elapsed + (self.epochs + 1) * elapsed / self.epochs_here <= self.seconds

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_here += 1
        logs = logs if logs is not None else {}
        logs["coverage_weight"] = float(self.model.coverage_weight.numpy())
        if not finite_loss(logs):  # StopOnNonFinite's stop stands; the backup keeps the epoch before
            return
        if self.start is None and (self.model.stop_training or not self._budget_left_for_phase(epoch)):
            self.start = epoch + 1
            self.model.stop_training = False
            self.checkpoint.best = None  # choose among the phase's epochs
            stopping = self.early_stopping
            stopping.best, stopping.wait, stopping.best_weights = None, 0, None
            stopping.best_epoch, stopping.stopped_epoch = epoch + 1, 0
        elif self.start is not None and epoch + 1 >= self.start + self.epochs:
            self.model.stop_training = True
        self.states.save(epoch, {"start": self.start})


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch when another epoch would pass
    `minutes` of training in this process (from the mean epoch time so far),
    on `clock` (a `nlptool.distribute.SharedClock`; default: this process's)."""

    def __init__(self, minutes, clock=None):
        super().__init__()
        self.seconds = minutes * 60
        self.clock = clock or SharedClock()

    def on_train_begin(self, logs=None):
        self.clock.start()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        elapsed = self.clock.elapsed()
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
    say=print,
    clock=None,
):
    """The standard callbacks of a run in `run_dir`; `fit` restores the
    backup (the `Backup` among them) before training.

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
        phase: None, or `phase(checkpoint, early_stopping, backup_dir, clock)`
            -> a callback that acts on their decisions (`CoveragePhase`).
        say: where the backup's messages go (a damaged backup, a fallback).
        clock: what the time budget reads (`nlptool.distribute.SharedClock`,
            the default: this process's clock).

    With an optimizer that keeps a moving average of the weights
    (`use_ema`), validation, the checkpoint and early stopping see the
    average, and the backup and training the weights as trained (see
    `SwapAveragedWeights`).
    """
    run_dir = Path(run_dir)
    clock = clock or SharedClock()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    checkpoint = BestCheckpoint(run_dir / CHECKPOINT, monitor, mode)
    stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, restore_best_weights=True)
    rate = []
    if schedule is not None:
        # before the backup, which then saves the weights it may load back at the end of an epoch
        rate = [ScheduleWithBackOff(schedule, back_off, checkpoint, run_dir / "backup")]
    elif back_off is not None:
        raise ValueError("A back-off needs a schedule of learning rates to act on.")
    backup = Backup(run_dir / "backup", history=run_dir / "history.csv", say=say)
    return [
        StopOnNonFinite(),  # first: a diverged epoch's logs are NaN for everything after it
        EpochCounter(epoch),
        *rate,
        backup,
        SwapAveragedWeights(),  # after the backup
        checkpoint,
        stopping,
        *([TimeBudget(max_minutes, clock)] if max_minutes is not None else []),
        *([phase(checkpoint, stopping, run_dir / "backup", clock)] if phase is not None else []),
        ResumeBestSoFar(run_dir / "backup", checkpoint, stopping),  # after the two it keeps
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        CommitBackup(backup),  # last: the epoch counts once every state of it is written
    ]


def restore(model, run_callbacks, epoch=None):
    """Load the backup of the `callbacks` list `run_callbacks` into `model`
    (built and compiled), its newest generation or that of `epoch`; returns
    the epoch to start at, for `fit`'s `initial_epoch` (0: the run has no
    backup yet)."""
    return next(c for c in run_callbacks if isinstance(c, Backup)).restore(model, epoch)


# === The training loop of every task ===

TRAINING_FILE = "training.json"  # written when training ends: a run with it is finished


def optimizer(config, kind="adam"):
    """The optimizer of a `TrainingConfig`: Adam (or SGD) at its rate, with
    its gradient clipping and weight averaging."""
    options = {"global_clipnorm": config.clip_norm}
    if config.ema_momentum is not None:
        options.update(use_ema=True, ema_momentum=config.ema_momentum)
    # under a tf.distribute strategy, clipping acts on the gradient summed over the replicas
    if kind == "sgd":
        return distribute.clip_after_sum(keras.optimizers.SGD)(config.learning_rate, **options)
    if kind == "adam":
        return distribute.clip_after_sum(keras.optimizers.Adam)(config.learning_rate, **options)
    raise ValueError(f"Received an invalid value for argument `kind`, expected 'adam' or 'sgd', got {kind!r}.")


def fit(model, batches, run_dir, config, epoch, monitor, mode, schedule=None, back_off=None, verbose=2, say=print):
    """Train the compiled `model` on `batches` (a `tasks.base.Batches`) into
    `run_dir` with the standard callbacks, the time budget of `config` (a
    `TrainingConfig`) and exact resume (from the backup, if the run has
    one); then write training.json (seconds of this process, epochs of the
    run so far, and `batches.info`). Raises `Diverged`, and writes no
    training.json, if the loss stops being finite.

    Under `config.distribution` "mirrored" or "multi-worker" the model must
    have been built and compiled in the strategy's scope
    (`nlptool.distribute.strategy`), and training goes through
    `nlptool.distribute.fit`; a worker other than the chief passes its own
    folder as `run_dir` (`nlptool.distribute.worker_dir`)."""
    strategy = distribute.strategy(config.distribution)
    worker = distribute.worker(config.distribution)
    gather = distribute.gathered(strategy, worker)
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
        say=say,
        clock=SharedClock(gather),
    )
    guard = next(c for c in run_callbacks if isinstance(c, StopOnNonFinite))
    started = time.monotonic()
    if strategy is None:
        model.fit(
            batches.train,
            validation_data=batches.validation,
            epochs=config.epochs,
            initial_epoch=restore(model, run_callbacks),
            callbacks=run_callbacks,
            shuffle=False,  # the pipelines order the data, by (seed, epoch)
            verbose=verbose,
            **batches.fit_options,
        )
    else:
        unknown = sorted(set(batches.fit_options) - {"class_weight"})
        if unknown:
            raise ValueError(f"Training under a strategy takes no fit option {unknown}.")
        backup = next(c for c in run_callbacks if isinstance(c, Backup))
        newest = backup.newest_sound_epoch()
        common = int(min(gather(newest)))  # the newest epoch that every worker's backup holds
        if common != newest:
            say(f"Another worker's backup ends at epoch {common}: resuming from there.")
        with strategy.scope():
            compat.symbolic_build(model, next(iter(batches.train)))  # every variable, before the replicated step
            # every worker loads once, at the same point: loading weights is a collective under multi-worker
            initial_epoch = restore(model, run_callbacks, epoch=common)
        distribute.fit(
            model,
            strategy,
            worker,
            batches.train,
            batches.validation,
            config.epochs,
            initial_epoch,
            run_callbacks,
            class_weight=batches.fit_options.get("class_weight"),
            verbose=verbose if worker.chief else 0,
        )
    if guard.diverged is not None:
        raise Diverged(run_dir, *guard.diverged, checkpoint=(Path(run_dir) / CHECKPOINT).is_file())
    summary = {"seconds": time.monotonic() - started, "epochs": epochs_run(run_dir), **batches.info}
    write_json(Path(run_dir) / TRAINING_FILE, summary)
    return summary
