"""The Python API at the level of a task: `nlptool.train` and `nlptool.load`.

Both are the code the command line runs: `nlptool train TASK ...` builds
the same DataSource and config and calls the same `runs.train`.
"""

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nlptool import config as config_lib
from nlptool import configs, runs
from nlptool import tasks as task_registry
from nlptool.tasks.base import DataSource

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from pandas import DataFrame


def train(
    task: str,
    run_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    train: "str | os.PathLike[str] | DataFrame | Sequence[str] | None" = None,
    validation: "str | os.PathLike[str] | DataFrame | Sequence[str] | None" = None,
    test: "str | os.PathLike[str] | DataFrame | Sequence[str] | None" = None,
    columns: Mapping[str, str] | None = None,
    delimiter: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    config: "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | DataclassInstance | None" = None,
    overrides: Iterable[str] = (),
    max_train_examples: int | None = None,
    overwrite: bool = False,
    verbose: int = 2,
    **options: Any,
) -> "runs.Run | None":
    """Train `task` ("sentiment", "language-model", "translation") into
    `run_dir` and return the `Run` (evaluated on `test` when given); with
    `training.distribution` multi-worker, on a worker other than the chief,
    None (the chief writes the run).

    Args:
        task: a registered task name.
        run_dir: the run directory; the same call again resumes an interrupted run.
        dataset: a registered dataset, instead of `train`.
        train: the training data: a file (CSV, TSV, JSON Lines; a text file
            for a language model), or data in memory (a pandas DataFrame; a
            list of lines for a language model).
        validation: validation data, as `train`; without it, a share of
            `train` is held out.
        test: test data, as `train`, evaluated after training.
        columns: role -> column name, e.g. {"text": "review", "label": "stars"}
            (default: the role names).
        delimiter: the field delimiter of CSV/TSV files (default: from the extension).
        data_dir: where registered datasets are looked for first.
        config: the task's config: None (its defaults), the name of a shipped
            config ("sst2", see `nlptool configs`) or a YAML file, a list of
            those (merged, the last wins), or a config instance.
        overrides: "dotted.key=value" strings applied last.
        max_train_examples: train on the first N training examples only.
        overwrite: start afresh in a run directory that holds another run.
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.
        **options: the task's own options (sentiment: init_from, init_encoder_from).

    Example:
        run = nlptool.train("sentiment", "runs/reviews", train="reviews.csv",
                            columns={"text": "review", "label": "stars"}, overrides=["training.epochs=2"])
    """
    registered = task_registry.get(task)
    config = _resolve(registered, config, overrides)
    if train is not None and not isinstance(train, (str, os.PathLike)):
        data = registered.from_frames(train, validation, test, columns=columns, config=config)
        if max_train_examples is not None:
            data.train = data.train[:max_train_examples]
    else:
        # training data in a file or a dataset go with validation and test data in files (or none), and
        # data in memory with training data in memory (above): mypy cannot tie their types to `train`'s
        data = DataSource(
            dataset=dataset,
            data_dir=data_dir,
            train_file=train,
            validation_file=validation,  # type: ignore[arg-type]
            test_file=test,  # type: ignore[arg-type]
            columns={} if dataset else {role: (columns or {}).get(role, role) for role in registered.columns},
            delimiter=delimiter,
            max_train_examples=max_train_examples,
        )
    say: Callable[..., object] = print if verbose else (lambda *args: None)
    return runs.train(registered, config, data, run_dir, options=options, overwrite=overwrite, verbose=verbose, say=say)


def _resolve(task, config, overrides):
    """The config of `task` from `config` (None, shipped names or files, or an instance) and `overrides`."""
    config_class, overrides = task.config_class, list(overrides)
    if config is None:
        return config_lib.resolve(config_class, [], overrides)
    if isinstance(config, config_class):
        return config_lib.resolve(config_class, [], overrides, base=config)
    names = [config] if isinstance(config, (str, os.PathLike)) else list(config)
    return config_lib.resolve(config_class, [configs.find(name, task.name) for name in names], overrides)


def load(path: str | os.PathLike[str]) -> runs.Run | runs.Exported:
    """A run directory (`nlptool.runs.Run`) or an export (`nlptool.runs.Exported`),
    each with `predict(texts, **options)`; a run also has `evaluate` and `export`."""
    return runs.load(path)
