"""The Python API at the level of a task: `nlptool.train` and `nlptool.load`.

Both are the code the command line runs: `nlptool train TASK ...` builds
the same DataSource and config and calls the same `runs.train`.
"""

import os
from pathlib import Path

from nlptool import config as config_lib
from nlptool import runs
from nlptool import tasks as task_registry
from nlptool.tasks.base import DataSource


def train(
    task,
    run_dir,
    *,
    dataset=None,
    train=None,
    validation=None,
    test=None,
    columns=None,
    delimiter=None,
    data_dir=None,
    config=None,
    overrides=(),
    max_train_examples=None,
    overwrite=False,
    verbose=2,
    **options,
):
    """Train `task` ("sentiment", "language-model", "translation") into
    `run_dir` and return the `Run` (evaluated on `test` when given).

    Args:
        task: a registered task name.
        run_dir: the run directory; the same call again resumes an interrupted run.
        dataset: a registered dataset, instead of `train`.
        train, validation, test: files (CSV, TSV, JSON Lines; text files for
            a language model), or data in memory (pandas DataFrames; lists of
            lines for a language model). Without `validation`, a share of
            `train` is held out.
        columns: role -> column name, e.g. {"text": "review", "label": "stars"}
            (default: the role names).
        delimiter: the field delimiter of CSV/TSV files (default: from the extension).
        data_dir: where registered datasets are looked for first.
        config: the task's config: None (its defaults), a YAML file, a list
            of YAML files (merged, the last wins), or a config instance.
        overrides: "dotted.key=value" strings applied last.
        max_train_examples: train on the first N training examples only.
        overwrite: start afresh in a run directory that holds another run.
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.
        **options: the task's own options (sentiment: init_from, init_encoder_from).

    Example:
        run = nlptool.train("sentiment", "runs/reviews", train="reviews.csv",
                            columns={"text": "review", "label": "stars"}, overrides=["training.epochs=2"])
    """
    task = task_registry.get(task)
    config = _resolve(task.config_class, config, overrides)
    if train is not None and not isinstance(train, (str, os.PathLike)):
        data = task.from_frames(train, validation, test, columns=columns, config=config)
        if max_train_examples is not None:
            data.train = data.train[:max_train_examples]
    else:
        data = DataSource(
            dataset=dataset,
            data_dir=data_dir,
            train_file=train,
            validation_file=validation,
            test_file=test,
            columns={} if dataset else {role: (columns or {}).get(role, role) for role in task.columns},
            delimiter=delimiter,
            max_train_examples=max_train_examples,
        )
    say = print if verbose else (lambda *args: None)
    return runs.train(task, config, data, run_dir, options=options, overwrite=overwrite, verbose=verbose, say=say)


def _resolve(config_class, config, overrides):
    overrides = list(overrides)
    if config is None:
        return config_lib.resolve(config_class, [], overrides)
    if isinstance(config, config_class):
        return config_lib.resolve(config_class, [], overrides, base=config)
    paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
    return config_lib.resolve(config_class, [Path(p) for p in paths], overrides)


def load(path):
    """A run directory (`nlptool.runs.Run`) or an export (`nlptool.runs.Exported`),
    each with `predict(texts, **options)`; a run also has `evaluate` and `export`."""
    return runs.load(path)
