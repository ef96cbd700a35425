"""Runs: the run directory, and the one train / evaluate / export / predict flow of every task.

    run = train("sentiment", config, DataSource(dataset="sst2"), "runs/sst2")
    run.evaluate()                      # the test data the run was given
    run.export("runs/sst2/export")
    load("runs/sst2/export").predict(["a gorgeous film"])

A run directory holds one run and nothing else (docs/design.md lists its
files). The same request again resumes an interrupted run exactly; another
request into a directory that holds a run is refused unless `overwrite`,
which empties it first, so that no file of an earlier run can answer for
a later one.
"""

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from nlptool import config as config_lib
from nlptool import tasks as task_registry
from nlptool.errors import RunError, UsageError
from nlptool.files import locked, saved_model_dir, write_json
from nlptool.tasks.base import DataSource, Preprocessing, Splits, Task, Trained, fingerprint

RUN_FILE = "run.json"  # the task, the request (config, data, options) and the nlptool version
CONFIG_FILE = "config.yaml"  # the resolved config the run trained with
CHECKPOINT = "checkpoints/best.weights.h5"
TRAINING_FILE = "training.json"  # written when training ends
METRICS_FILE = "metrics.json"
EXPORT_INFO = "assets.extra/nlptool.json"  # in an export: its task; TF Serving ignores assets.extra


def _version() -> str:
    from nlptool import __version__

    return __version__


def _differences(old, new, prefix=""):
    """The dotted keys whose values differ between two plain dicts, with both values."""
    found = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, name + ".")
        elif a != b:
            found.append(f"{name}: {a!r} in the run, {b!r} now")
    return found


class Run:
    """A run directory: its task, the config it trained with, and the data it was given."""

    def __init__(self, path: str | os.PathLike[str], task: Task, request: dict[str, Any]) -> None:
        self.path = Path(path)
        self.task = task
        self._request = request
        self.source: DataSource = DataSource.from_dict(request["data"])
        self._trained: Trained | None = None
        self._serving: tuple[Any, dict[str, Any]] | None = None  # (tf.Module, signatures) of `predict`
        self.metrics: dict[str, Any] | None = None  # of the test data, when `train` evaluated on some

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, task={self.task.name!r})"

    # --- opening and creating ---

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Run":
        """The run in `path`; RunError if `path` holds none."""
        path = Path(path)
        record = path / RUN_FILE
        if not record.is_file():
            if not path.exists():
                raise RunError(f"{path} does not exist.")
            raise RunError(f"{path} is not a run directory: it has no {RUN_FILE}.")
        request = json.loads(record.read_text(encoding="utf-8"))
        return cls(path, task_registry.get(request["task"]), request)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        task: Task,
        config: Any,
        source: DataSource,
        options: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> tuple["Run", bool]:
        """The run of this request in `path` (new, or the one to resume);
        refuses a directory that holds anything else unless `overwrite`.
        Returns (run, fresh)."""
        path = Path(path)
        options = {key: (str(value) if isinstance(value, Path) else value) for key, value in (options or {}).items()}
        request = {
            "task": task.name,
            "config": config_lib.to_dict(config),
            "data": source.to_dict(),
            "options": options,
            "nlptool_version": _version(),
        }
        _check_folder(path)
        if path.exists() and any(path.iterdir()):
            if not (path / RUN_FILE).is_file():
                raise RunError(
                    f"{path} is not empty and holds no nlptool run; choose a new or empty directory for --run-dir."
                )
            if overwrite:
                for entry in path.iterdir():  # the folder itself stays: this process holds its lock
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            else:
                existing = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
                mine = {key: value for key, value in request.items() if key != "nlptool_version"}
                theirs = {key: existing.get(key) for key in mine}
                differences = _differences(theirs, mine)
                if differences:
                    shown = "; ".join(differences[:3]) + (
                        f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
                    )
                    raise RunError(
                        f"{path} holds a {existing['task']} run with other settings ({shown}). "
                        "Pass --overwrite (overwrite=True) to start it afresh, or choose another run directory."
                    )
                if (path / TRAINING_FILE).is_file():
                    raise RunError(
                        f"{path} holds a finished run of these settings: evaluate or export it, or pass "
                        "--overwrite (overwrite=True) to train it again."
                    )
                return cls(path, task, existing), False  # interrupted: resume it
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / RUN_FILE, request)
        return cls(path, task, request), True

    @contextlib.contextmanager
    def _removed_on_early_failure(self, fresh: bool) -> Iterator[None]:
        """A new run that fails before its first backup is removed whole;
        later it is kept, so that the same request resumes it."""
        try:
            yield
        except BaseException:
            if fresh and not (self.path / "backup").exists():
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    # --- what the run holds ---

    @property
    def finished(self) -> bool:
        return (self.path / TRAINING_FILE).is_file()

    @property
    def config(self) -> Any:
        return config_lib.resolve(self.task.config_class, [self.path / CONFIG_FILE])

    def load(self) -> Trained:
        """The trained model of the run with its best weights (a `Trained`), loaded once."""
        if self._trained is None:
            task = self.task
            needed = [CONFIG_FILE, CHECKPOINT]
            needed += [str(Path(folder) / "tokenizer.json") for folder in task.tokenizer_folders.values()]
            needed += ["labels.json"] if task.has_labels else []
            missing = [name for name in needed if not (self.path / name).is_file()]
            if missing:
                raise RunError(f"{self.path} is not a trained {task.name} run yet: it lacks {missing}.")
            config = self.config
            preprocessing = Preprocessing.load(self.path, task.tokenizer_folders, labels=task.has_labels)
            model = task.build_model(config, preprocessing)
            try:
                model.load_weights(self.path / CHECKPOINT)
            except Exception as error:  # noqa: BLE001 (h5py and Keras each raise their own kinds)
                raise RunError(
                    f"{self.path / CHECKPOINT} cannot be loaded ({type(error).__name__}: {error}): it is damaged, "
                    "or was written by another model. Train the run again with --overwrite."
                ) from None
            self._trained = Trained(task, config, preprocessing, model, self.path)
        return self._trained

    # --- evaluate, export, predict ---

    def evaluation_source(
        self,
        dataset: str | None = None,
        test_file: str | os.PathLike[str] | None = None,
        columns: Mapping[str, str] | None = None,
        delimiter: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> DataSource:
        """The DataSource to evaluate on: the dataset or file given, with the
        run's columns where none are given; by default the run's own test data."""
        recorded = self.source
        if dataset and test_file:
            raise UsageError("Evaluate on a dataset (--dataset) or a file (--test-file), not both.")
        if test_file:
            return DataSource(test_file=test_file, columns={**recorded.columns, **(columns or {})}, delimiter=delimiter)
        if dataset:
            return DataSource(dataset=dataset, data_dir=data_dir or recorded.data_dir)
        if recorded.dataset:
            return DataSource(dataset=recorded.dataset, data_dir=data_dir or recorded.data_dir)
        if recorded.test_file:
            return DataSource(test_file=recorded.test_file, columns=recorded.columns, delimiter=recorded.delimiter)
        raise UsageError(
            f"{self.path} was trained without test data; name the data to evaluate on: "
            "--dataset NAME [--split S] or --test-file FILE (dataset= or test_file= in Python)."
        )

    def evaluate(
        self,
        data: Any = None,
        split: str | None = None,
        *,
        dataset: str | None = None,
        test_file: str | os.PathLike[str] | None = None,
        columns: Mapping[str, str] | None = None,
        delimiter: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """The task's metrics on `data` (in memory, the task's form), or on
        a dataset's `split` or a file; by default the run's own test data.
        Written to RUN_DIR/metrics.json and returned."""
        trained = self.load()
        if data is None:
            source = self.evaluation_source(dataset, test_file, columns, delimiter, data_dir)
            if split and not source.dataset:
                raise UsageError("--split names a split of a dataset; a file is evaluated whole.")
            data, split = self.task.read_split(source, trained.config, split)
        metrics = self.task.evaluate(trained, data, split or "test", **options)
        write_json(self.path / METRICS_FILE, metrics)
        return metrics

    def export(
        self, out: str | os.PathLike[str] | None = None, version: int | None = None, overwrite: bool = False
    ) -> Path:
        """Write the run's string-in SavedModel as version `version` (default:
        the next) of the model folder `out` (default RUN_DIR/export),
        atomically; returns the version's folder, e.g. RUN_DIR/export/1."""
        from nlptool import export as export_lib

        with locked(self.path, "exporting"):
            return self._export(export_lib, out, version, overwrite)

    def _export(self, export_lib, out, version, overwrite):
        trained = self.load()
        module, signatures = self.task.serving_module(trained)
        info = {
            "task": self.task.name,
            "nlptool_version": _version(),
            "signatures": list(signatures),
            "tensorflow_text": any(_needs_tf_text(t) for t in trained.preprocessing.tokenizers.values()),
        }
        out = self.path / "export" if out is None else out
        return export_lib.save(
            module, out, signatures=signatures, version=version, overwrite=overwrite, extra={EXPORT_INFO: info}
        )

    def predict(self, texts: Iterable[str], **options: Any) -> list[dict[str, Any]]:
        """One dict per text (labels, generated text, translations, by task), with the task's options."""
        texts = _text_list(texts)
        if self._serving is None:
            self._serving = self.task.serving_module(self.load())
        return self.task.predict(self._serving[1], texts, **options)


def _check_folder(path):
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} is a file, not a run directory.")


def _needs_tf_text(tokenizer):
    return type(tokenizer).__name__ in ("SentencePieceTokenizer", "WordPieceTokenizer")


def _text_list(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise UsageError("Pass a list of texts, not a single string: predict([text]).")
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise UsageError(f"Texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}.")
    return texts


class Exported:
    """An exported SavedModel, loaded with `tf.saved_model.load`, through
    the same `predict` as the run it came from. `path` is a SavedModel or a
    model folder of numbered versions (then the highest, as TF Serving
    chooses)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tensorflow as tf

        found = saved_model_dir(path)
        if found is None:
            raise RunError(f"{path} holds no SavedModel (no saved_model.pb, no numbered version folder with one).")
        self.path = found
        info_path = self.path / EXPORT_INFO
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        if info.get("tensorflow_text", not info):
            # SentencePiece and WordPiece ops come from tensorflow-text; registering them is what loading needs
            with contextlib.suppress(ImportError):
                import tensorflow_text  # noqa: F401
        self._module = tf.saved_model.load(str(self.path))
        self.signatures = self._module.signatures
        self.task: Task = task_registry.get(info["task"]) if "task" in info else self._infer_task()

    def __repr__(self) -> str:
        return f"Exported({str(self.path)!r}, task={self.task.name!r})"

    def _infer_task(self) -> Task:
        """The task of an export written without assets.extra/nlptool.json: the one whose signatures it has."""
        for name in task_registry.names():
            task = task_registry.get(name)
            serving = self.signatures.get("serving_default")
            if set(task.signatures) <= set(self.signatures) and serving is not None:
                if task.input_name in serving.structured_input_signature[1]:
                    return task
        raise RunError(
            f"{self.path} is a SavedModel, but not one nlptool exported (its signatures: {sorted(self.signatures)})."
        )

    def predict(self, texts: Iterable[str], **options: Any) -> list[dict[str, Any]]:
        """One dict per text, as the run's `predict` gives them."""
        return self.task.predict(self.signatures, _text_list(texts), **options)

    def evaluate(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RunError(f"{self.path} is an export; evaluate the run directory it was exported from.")

    def export(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RunError(f"{self.path} is an export already; export the run directory it came from.")


def task_of(path: str | os.PathLike[str]) -> tuple[Task, str]:
    """(the Task, "run" or "export") of what `path` holds, read from its
    record without loading a model; RunError if it holds neither."""
    from nlptool import presets

    if presets.is_preset(path):
        return task_registry.get("language-model"), "run"
    path = Path(path)
    if not (path / RUN_FILE).is_file() and (found := saved_model_dir(path)) is not None:
        info_path = found / EXPORT_INFO
        if not info_path.is_file():  # an export written before the record existed: the model tells
            return Exported(path).task, "export"
        return task_registry.get(json.loads(info_path.read_text(encoding="utf-8"))["task"]), "export"
    return Run.open(path).task, "run"


def load(path: str | os.PathLike[str]) -> "Run | Exported":
    """A run directory (`Run`) or an export (`Exported`: a SavedModel, or a
    model folder whose highest version is one) at `path`; "preset:NAME" is
    the language-model run of that preset (see `nlptool.presets`)."""
    from nlptool import presets

    if presets.is_preset(path):
        return Run.open(presets.run_dir(str(path)))
    path = Path(path)
    if (path / RUN_FILE).is_file():
        return Run.open(path)
    if saved_model_dir(path) is not None:
        return Exported(path)
    if not path.exists():
        raise RunError(f"{path} does not exist.")
    raise RunError(
        f"{path} is neither a run directory (it has no {RUN_FILE}) nor an export "
        "(no saved_model.pb, no numbered version folder with one)."
    )


def train(
    task: str | Task,
    config: Any,
    data: DataSource | Splits,
    run_dir: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    verbose: int = 2,
    say: Callable[..., object] = print,
) -> Run | None:
    """Train `task` (a name or a Task) with `config` on `data` (a
    DataSource, or Splits in memory) into `run_dir`; evaluate on the test
    data if there are any. Returns the Run.

    The data are read and checked before anything is written. The same
    request on an interrupted run directory resumes it exactly.

    Under `training.distribution` multi-worker every worker calls this with
    the same arguments; the chief writes `run_dir` and returns its Run, and
    every other worker trains with it, keeps its own state beside it
    (`nlptool.distribute.worker_dir`) and returns None.
    """
    import keras

    from nlptool import distribute, training

    task = task_registry.get(task) if isinstance(task, str) else task
    # first: MultiWorkerMirroredStrategy starts only before TensorFlow has run anything in this process
    strategy = distribute.strategy(config.training.distribution)
    worker = distribute.worker(config.training.distribution)
    options = dict(options or {})
    if isinstance(data, Splits):
        splits, source = data, DataSource(in_memory=True, fingerprint=fingerprint(data))
    elif isinstance(data, DataSource):
        splits, source = task.read_data(data, config), data
    else:
        raise TypeError(f"Expected a DataSource or Splits for argument `data`, got {type(data).__name__}.")
    say(task.describe(splits))
    config, note = task.adapt(config, splits)
    if note:
        say(note)
    home = Path(run_dir) if worker.chief else distribute.worker_dir(run_dir, worker)
    _check_folder(home)
    with locked(home, "training"):  # from the check of the directory to the end of the evaluation
        run, fresh = Run.create(home, task, config, source, options, overwrite=overwrite)
        if not fresh:
            say(f"resuming {run.path}")
        with run._removed_on_early_failure(fresh):
            keras.utils.set_random_seed(config.training.seed)
            config, preprocessing = task.prepare(config, splits, **options)
            config_lib.save_yaml(config, run.path / CONFIG_FILE)
            preprocessing.save(run.path, task.tokenizer_folders)
            distribute.check_same(strategy, worker, run.path, task.tokenizer_folders)
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                model = task.build_model(config, preprocessing)
                task.initialize(model, preprocessing, **options)
                task.compile(model, config)
            epoch = training.epoch_variable()
            batches = task.datasets(config, preprocessing, splits, epoch)
            schedule, back_off = task.schedule(config)
            monitor, mode = task.monitor
            training.fit(
                model, batches, run.path, config.training, epoch, monitor, mode, schedule, back_off, verbose, say
            )
        epochs = training.epochs_run(run.path)
        if not worker.chief:
            say(f"worker {worker.index} trained {epochs} epochs with the chief, which writes {run_dir}")
            return None
        say(f"trained {run.path} ({task.name}, {epochs} epoch{'' if epochs == 1 else 's'})")
        if splits.test is not None:
            run.metrics = run.evaluate(splits.test, split=splits.test_name)
    return run
