"""The task contract: what every task declares, and the config sections they share.

A task (sentiment, language modelling, translation, ...) is a subclass of
`Task`, registered by name in `nlptool.tasks`. `nlptool.runs` drives every
task through the same flow (read data -> prepare the tokenisers and labels
-> build and fit the model -> evaluate -> export -> predict), and the
command line builds each task's options from what it declares here, so a
new task touches neither.

A task module imports no TensorFlow when it is imported: the command line
reads the registry to answer `--help`, which must be instant. Model code
lives in `nlptool.models` and is imported inside the methods that need it.
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from nlptool.errors import DataError, UsageError

# === Starting from a trained run ===


def start_spec(path):
    """What `--init-from` names, as run.json records it: a preset spec as
    given, a run directory as an absolute path (wherever the command ran)."""
    from nlptool import presets

    if path is None or presets.is_preset(path):
        return path
    return str(Path(path).resolve())


def trained_run(path, task_name):
    """The trained run at `path` (or the preset "preset:NAME"), which must be a `task_name` run."""
    from nlptool import runs
    from nlptool.errors import RunError

    run = runs.load(path)
    if not isinstance(run, runs.Run):
        raise RunError(f"{path} is an export; start from a run directory or a preset.")
    if run.task.name != task_name:
        raise RunError(f"{path} is a {run.task.name} run; a {task_name} run is needed here.")
    return run.load()


# === The values a config number may take ===


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of numbers: from `low` (excluded if `low_open`) to `high`
    (None: no bound; excluded if `high_open`). NaN is in no range."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value):
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def __str__(self):
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_ONE = Range(1)
AT_LEAST_ZERO = Range(0)
POSITIVE = Range(0, low_open=True)
RATE = Range(0, 1, high_open=True)  # dropout, label smoothing: [0, 1)
OPEN_UNIT = Range(0, 1, low_open=True, high_open=True)  # (0, 1)
PROBABILITY = Range(0, 1, low_open=True)  # (0, 1]
# what one request may ask of a decoder, so that none takes long or much memory whatever it asks
BEAM_WIDTH = Range(1, 64)  # hypotheses kept per input
OUTPUT_TOKENS = Range(1, 1024)  # tokens of one output


class Section:
    """A config section whose numbers are checked when it is made: `ranges`
    maps a field to its `Range` (merged over the base classes; a None value
    passes, as an optional field's "off"). A value outside raises ValueError
    naming the field, which the config loader reports with its section and
    source and the command line as one line (exit code 2)."""

    ranges: ClassVar[dict] = {}

    def __post_init__(self):
        self.check(**{name: getattr(self, name) for name in self.bounds()})

    @classmethod
    def bounds(cls):
        """Field -> Range, over the base classes too."""
        ranges = {}
        for klass in reversed(cls.__mro__):
            ranges.update(vars(klass).get("ranges", {}))
        return ranges

    @classmethod
    def check(cls, **values):
        """Raise ValueError naming the first of `values` (fields of this
        section; None passes) outside its range. The same rules hold for
        the options of a prediction (`nlptool predict --temperature ...`)."""
        bounds = cls.bounds()
        for name, value in values.items():
            if value is not None and name in bounds and value not in bounds[name]:
                raise ValueError(f"{name} must be {bounds[name]}, not {value!r}.")


# === Shared config sections ===


@dataclasses.dataclass
class TokenizerConfig(Section):
    """The tokeniser of a task; tasks subclass it to add their own fields."""

    kind: Literal["word", "char", "byte", "wordpiece", "sentencepiece"] = "word"  # see the tokenisers guide
    vocab_size: int = 20_000  # reserved ids included (ignored by the byte tokeniser)

    ranges = {"vocab_size": Range(5)}  # the 4 reserved ids (padding, unknown, start, end) and one more


@dataclasses.dataclass
class TrainingConfig(Section):
    """Training settings every task has; tasks subclass it to add their own
    fields or to change a default (by declaring the field again)."""

    epochs: int = 10  # passes over the training data (early stopping may end sooner)
    batch_size: int = 64  # examples per step
    learning_rate: float = 1e-3  # of the task's optimizer (Adam unless the task says otherwise)
    seed: int = 1234  # of weights, shuffling and dropout: the same seed gives the same run on one machine
    early_stopping_patience: int = 3  # epochs without validation gain before stopping
    clip_norm: float | None = None  # global gradient norm clipping; null: none
    # Polyak averaging: validate, checkpoint and export an exponential moving average of the weights,
    # updated after every step with this momentum (Keras's optimizer `use_ema`); null: the weights as trained
    ema_momentum: float | None = None
    max_minutes: float | None = None  # stop after the epoch that would pass this wall-clock budget
    # after an epoch that ends worse than the best so far, go on from the best weights at the rate
    # times this (see training.ScheduleWithBackOff); null: go on from where training is
    lr_backoff: float | None = None
    validation_fraction: float = 0.05  # held out of the training data when no validation data is given
    # none: one device; mirrored: every GPU of this machine; multi-worker: the hosts of TF_CONFIG
    # (see the scale-out guide); batch_size stays the global batch
    distribution: Literal["none", "mirrored", "multi-worker"] = "none"

    ranges = {
        "epochs": AT_LEAST_ONE,
        "batch_size": AT_LEAST_ONE,
        "learning_rate": AT_LEAST_ZERO,  # 0: the weights stay as they start (NaN is refused)
        "early_stopping_patience": AT_LEAST_ZERO,
        "clip_norm": POSITIVE,
        "ema_momentum": OPEN_UNIT,
        "max_minutes": POSITIVE,
        "lr_backoff": OPEN_UNIT,
        "validation_fraction": OPEN_UNIT,
    }


# === What flows between the steps ===


@dataclasses.dataclass
class DataSource:
    """Where a run's data come from: a registered dataset, or the user's
    files (CSV, TSV or JSON Lines; text files for language models) with the
    column of each role. Recorded in the run's run.json, so that `evaluate`
    finds the test data and the columns again."""

    dataset: str | None = None
    # folders and files may be given as os.PathLike too; __post_init__ makes them absolute str paths
    data_dir: str | os.PathLike[str] | None = None
    train_file: str | os.PathLike[str] | None = None
    validation_file: str | os.PathLike[str] | None = None
    test_file: str | os.PathLike[str] | None = None
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # role ("text", "label", ...) -> column
    delimiter: str | None = None
    max_train_examples: int | None = None
    in_memory: bool = False  # the training data were passed as data frames or lists, not files
    fingerprint: str | None = None  # of data in memory: other data are another run

    def __post_init__(self):
        if self.dataset and self.train_file:
            raise UsageError("Give either a registered dataset or a training file, not both.")
        for field in ("data_dir", "train_file", "validation_file", "test_file"):
            value = getattr(self, field)
            if value is not None:
                # absolute, so that a run's record works from any directory
                setattr(self, field, str(Path(value).expanduser().resolve()))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(**data)


@dataclasses.dataclass
class Splits:
    """The data of a task's run: train, validation and (optional) test, in
    the task's own form (data frames of role columns, lists of lines)."""

    train: Any
    validation: Any
    test: Any = None
    test_name: str = "test"  # how metrics.json names the test split


def fingerprint(splits):
    """A SHA-256 of the data of `splits` (data frames or lists of strings), so
    that a run directory can tell the data it was trained on from other data."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    for part in (splits.train, splits.validation, splits.test):
        if part is None:
            digest.update(b"none")
        elif isinstance(part, pd.DataFrame):
            digest.update(",".join(map(str, part.columns)).encode("utf-8"))
            digest.update(pd.util.hash_pandas_object(part.astype(str), index=False).to_numpy().tobytes())
        else:
            digest.update("\x00".join(map(str, part)).encode("utf-8"))
        digest.update(b"|")
    return digest.hexdigest()


@dataclasses.dataclass
class Batches:
    """What `Task.datasets` gives the training loop."""

    train: Any  # tf.data.Dataset
    validation: Any
    info: dict = dataclasses.field(default_factory=dict)  # joins training.json (tokens, examples)
    fit_options: dict = dataclasses.field(default_factory=dict)  # more keyword arguments of Model.fit
    # a callback that acts on the checkpoint's and early stopping's decisions:
    # phase(checkpoint, early_stopping, backup_dir, clock), e.g. training.CoveragePhase
    phase: Any = None


LABELS_FILE = "labels.json"


@dataclasses.dataclass
class Preprocessing:
    """A task's fitted preprocessing: tokenisers by role, and the label map
    of a classifier."""

    tokenizers: dict
    labels: Any = None  # nlptool.data.LabelMap
    start: Any = None  # the Trained run whose weights the model starts from (not saved)
    start_backward: Any = None  # a backward language model it starts from too (not saved)

    def save(self, run_dir, folders):
        from nlptool.files import write_json
        from nlptool.tokenizers.files import save_tokenizer

        for role, tokenizer in self.tokenizers.items():
            save_tokenizer(tokenizer, Path(run_dir) / folders[role])
        if self.labels is not None:
            write_json(Path(run_dir) / LABELS_FILE, self.labels.to_config())

    @classmethod
    def load(cls, run_dir, folders, labels=False):
        from nlptool.tokenizers.files import load_tokenizer

        tokenizers = {role: load_tokenizer(Path(run_dir) / folder) for role, folder in folders.items()}
        label_map = None
        if labels:
            from nlptool.data import LabelMap

            label_map = LabelMap.from_config(json.loads((Path(run_dir) / LABELS_FILE).read_text("utf-8")))
        return cls(tokenizers, label_map)


@dataclasses.dataclass
class Trained:
    """A finished run, loaded: its task, config, preprocessing and the model with its best weights."""

    task: "Task"
    config: Any
    preprocessing: Preprocessing
    model: Any
    path: Path


# === The contract ===


class Task:
    """One NLP task. Subclasses set the class attributes and implement the
    methods that raise NotImplementedError; the others have defaults that
    fit most tasks. See docs/design.md for how the flow calls them."""

    name: ClassVar[str]  # one spelling everywhere: CLI, run.json, the dataset registry's task tag
    description: ClassVar[str]  # one line for `nlptool train --help`
    config_class: ClassVar[type]
    columns: ClassVar[dict[str, str]]  # role -> help, for the columns of a user file
    tokenizer_folders: ClassVar[dict[str, str]] = {"text": "."}  # role -> folder in the run directory
    has_labels: ClassVar[bool] = False
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")  # metric and mode of checkpoints, early stopping
    signatures: ClassVar[tuple[str, ...]] = ("serving_default",)  # of the export, serving_default first
    input_name: ClassVar[str] = "text"  # the string input of serving_default
    command: ClassVar[str | None] = None  # a task-named spelling of `predict` ("generate", "translate")
    examples: ClassVar[str] = "examples"  # what the summary of the data counts ("lines", "sentence pairs")

    # --- command line ---

    def add_train_arguments(self, parser):
        """Options of `nlptool train TASK` beyond the shared ones."""

    def train_options(self, args):
        """The keyword arguments of `prepare` and `initialize` from the parsed options."""
        return {}

    def configure(self, config, args):
        """`config` with the values that this task's own flags set."""
        return config

    def add_evaluate_arguments(self, parser):
        """Options of `nlptool evaluate` for this task's runs (beyond the data to evaluate on)."""

    def evaluate_options(self, args):
        """The keyword arguments of `evaluate` from the parsed options."""
        return {}

    def add_predict_arguments(self, parser):
        """Options of `nlptool predict` for this task's runs and exports (decoding settings)."""

    def predict_options(self, args):
        """The keyword arguments of `predict` from the parsed options."""
        return {}

    # --- data ---

    def read_data(self, source, config):
        """The Splits of `source` (a DataSource), read and checked; raises
        DataError or DatasetError naming the file, row and column at fault."""
        raise NotImplementedError

    def read_split(self, source, config, split=None):
        """(data, name) to evaluate on: `split` of the dataset of `source`
        (its test split by default), or the test file of `source`."""
        raise NotImplementedError

    def from_frames(self, train, validation=None, test=None, columns=None, config=None):
        """Splits from data given in memory (data frames or lists of strings)."""
        raise NotImplementedError

    def describe(self, splits):
        """The summary line of the data that training prints."""
        sizes = [f"{len(splits.train):,} training", f"{len(splits.validation):,} validation"]
        if splits.test is not None:
            sizes.append(f"{len(splits.test):,} test")
        return ", ".join(sizes) + f" {self.examples}"

    def adapt(self, config, splits):
        """(config, note): `config` with the settings it leaves null chosen for
        `splits`, and a line saying what was chosen (None: nothing was)."""
        return config, None

    # --- preprocessing and model ---

    def prepare(self, config, splits, **options):
        """(config, Preprocessing): the tokenisers (and labels) learnt from
        the training data, or taken from a run to start from; the config
        may change with them (a model shape taken from that run)."""
        raise NotImplementedError

    def build_model(self, config, preprocessing):
        raise NotImplementedError

    def initialize(self, model, preprocessing, **options):
        """Weights from elsewhere (an earlier run, a language model) before training."""

    def compile(self, model, config):
        from nlptool import training

        model.compile(optimizer=training.optimizer(config.training), jit_compile=False)

    def datasets(self, config, preprocessing, splits, epoch):
        """Batches of the training and validation data; `epoch` is the
        variable that makes each epoch's shuffling a function of it."""
        raise NotImplementedError

    def schedule(self, config):
        """(rate(epoch) or None, back-off factor or None) for the learning rate:
        by default the constant rate, with the config's back-off if it has one."""
        t = config.training
        if t.lr_backoff is None:
            return None, None
        return (lambda epoch: t.learning_rate), t.lr_backoff

    # --- evaluation, serving, prediction ---

    def evaluate(self, trained, data, split, **options):
        """The metrics of the field on `data`; the flow writes metrics.json."""
        raise NotImplementedError

    def summary(self, metrics):
        """The line that `evaluate` prints of `metrics`."""
        shown = {key: value for key, value in metrics.items() if isinstance(value, (int, float, str))}
        return ", ".join(
            f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}" for key, value in shown.items()
        )

    def serving_module(self, trained):
        """(tf.Module, {signature name: tf.function or concrete function}) of the export."""
        raise NotImplementedError

    def predict(self, signatures, texts, **options):
        """One dict per text, through the signatures of the serving module or of an export."""
        raise NotImplementedError

    def format_prediction(self, text, row):
        """One line of `nlptool predict` output."""
        return "\t".join([*(str(value) for value in row.values()), text])

    # --- helpers for subclasses ---

    def column_flags(self):
        """How messages name the column of each role: its command-line flag."""
        return {role: f"--{role}-column" for role in self.columns}

    def role_frames(self, train, validation, test, columns):
        """`role_frame` of each of the three splits given in memory (None stays None)."""
        splits = ((train, "the training data"), (validation, "the validation data"), (test, "the test data"))
        return [None if frame is None else self.role_frame(frame, columns, where) for frame, where in splits]

    def role_frame(self, frame, columns, where="the data frame"):
        """A data frame of the roles of this task from `frame`, whose
        columns `columns` (role -> column, default: the role names) name;
        raises DataError for a missing column or an empty text."""
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"Expected a pandas DataFrame for {where}, got {type(frame).__name__}.")
        columns = {role: (columns or {}).get(role, role) for role in self.columns}
        missing = [column for column in columns.values() if column not in frame.columns]
        if missing:
            raise DataError(f"{where} has no column {missing[0]!r}; its columns are {list(frame.columns)}.")
        result = pd.DataFrame({role: frame[column].tolist() for role, column in columns.items()})
        for role, column in columns.items():
            empty = [i for i, value in enumerate(result[role]) if not isinstance(value, int) and not str(value).strip()]
            if empty:
                raise DataError(f"{where}: empty {role} in column {column!r} at rows {empty[:5]} (0-based).")
        return result
