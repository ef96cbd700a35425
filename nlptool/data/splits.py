"""Training, validation and test data: held-out splits and labelled data sets.

`stratified_split` holds out a share of labelled rows with every class in
the same proportion; `random_split` holds out a seeded random share of
unlabelled rows (sentence pairs, say). `load_labeled_data` reads the
training file plus optional validation and test files (or holds out a
stratified validation split of the training file) into a `LabeledData`.
"""

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nlptool.data.labels import LABEL, LabelMap, check_labels_known, read_labeled_with_source
from nlptool.errors import DataError


def _check_fraction(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(
            f"Received an invalid value for argument `fraction`, expected a number in (0, 1), got {fraction!r}."
        )


def stratified_split(
    frame: pd.DataFrame, fraction: float, seed: int, *, source: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out `fraction` of `frame`'s rows with every class in the same proportion.

    Args:
        frame: a frame with a "label" column, e.g. from `read_labeled`.
        fraction: the share of rows to hold out, in (0, 1).
        seed: the random seed; the same seed gives the same split.
        source: a name for the data in error messages, e.g. the file's path.

    Returns:
        (train_frame, held_out_frame), each keeping `frame`'s index.

    Raises:
        DataError: a class has fewer than two rows, or the split would leave
            fewer rows than classes on one side.
        ValueError: `fraction` is not in (0, 1).
    """
    _check_fraction(fraction)
    from sklearn.model_selection import train_test_split

    where = f"{source}" if source is not None else "the data"
    counts = frame[LABEL].value_counts()
    rarest, fewest = counts.idxmin(), int(counts.min())
    if fewest < 2:
        raise DataError(
            f"Cannot make a stratified split of {where}: class {rarest!r} has only {fewest} row; every class needs "
            f"at least 2 (one to train on, one to hold out). Add rows or pass a separate validation file."
        )
    n_rows, n_classes = len(frame), len(counts)
    held_out = math.ceil(fraction * n_rows)  # what scikit-learn takes for a float test_size
    if held_out < n_classes or n_rows - held_out < n_classes:
        raise DataError(
            f"Cannot make a stratified split of {where}: holding out {fraction} of {n_rows} rows gives "
            f"{held_out} held-out and {n_rows - held_out} training rows, and each side needs at least one row of "
            f"each of the {n_classes} classes. Change the fraction or pass a separate validation file."
        )
    try:
        train, rest = train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame[LABEL])
    except ValueError as error:  # anything the checks above missed, still as a DataError
        raise DataError(f"Cannot make a stratified split of {where}: {error}") from None
    return train, rest


def random_split(
    frame: pd.DataFrame, fraction: float, seed: int, source: str | os.PathLike[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random `fraction` of `frame`'s rows, e.g. sentence pairs.

    The held-out rows are the first max(1, round(len(frame) * fraction))
    of a permutation drawn with `np.random.default_rng(seed)`.

    Args:
        frame: any DataFrame.
        fraction: the share of rows to hold out, in (0, 1).
        seed: the random seed; the same seed gives the same split.
        source: a name for the data in error messages, e.g. the file's path.

    Returns:
        (train_frame, held_out_frame), each in `frame`'s row order with a new
        index 0..n-1 (unlike `stratified_split`, which keeps the index).

    Raises:
        DataError: `frame` has fewer than two rows, or holding out `fraction`
            would leave no training row.
        ValueError: `fraction` is not in (0, 1).
    """
    _check_fraction(fraction)
    where = f"{source}" if source is not None else "the data"
    n_rows = len(frame)
    if n_rows < 2:
        raise DataError(
            f"Cannot hold out rows of {where} for validation: it has {n_rows} row{'' if n_rows == 1 else 's'}, "
            f"and a split needs at least 2 (one to train on, one to hold out). Add rows or pass a separate "
            f"validation file."
        )
    held_out = max(1, round(n_rows * fraction))
    if held_out >= n_rows:
        raise DataError(
            f"Cannot hold out rows of {where} for validation: holding out {fraction} of {n_rows} rows leaves no "
            f"training row. Change the fraction or pass a separate validation file."
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    # sorted, so both parts keep the file's order (a running text, a corpus sorted by source, ...)
    validation = frame.iloc[np.sort(order[:held_out])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[held_out:])].reset_index(drop=True)
    return train, validation


@dataclass(frozen=True)
class LabeledData:
    """Training, validation and (optional) test frames plus the training labels' map."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    label_map: LabelMap


def load_labeled_data(
    train_path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    validation_path: str | os.PathLike[str] | None = None,
    test_path: str | os.PathLike[str] | None = None,
    validation_fraction: float | Callable[[int, int], float] = 0.1,
    seed: int = 1234,
    delimiter: str | None = None,
    names: Mapping[str, str] | None = None,
) -> LabeledData:
    """Read the training data and its validation (and test) data.

    Args:
        train_path: the training file: CSV, TSV or JSON Lines, as
            `read_labeled` reads it.
        text_column: the name of the text column in every file.
        label_column: the name of the label column in every file.
        validation_path: a separate validation file; None holds out a
            stratified `validation_fraction` of the training file instead.
        test_path: an optional test file.
        validation_fraction: the share of training rows held out when there
            is no `validation_path`, or a function of (rows, classes) of the
            training file that gives it.
        seed: the seed of that split.
        delimiter: the field delimiter of every CSV/TSV file; None takes each
            file's from its extension.
        names: how messages name the column arguments, as for `read_labeled`.

    Returns:
        A `LabeledData`; its `label_map` is built from the training labels.

    Raises:
        DataError: any file fails `read_labeled`, the split is impossible,
            or a validation/test label does not occur in the training data.
    """
    train, _ = read_labeled_with_source(train_path, text_column, label_column, delimiter, names=names)
    label_map = LabelMap.from_labels(train[LABEL])

    def read_other(path):
        frame, source = read_labeled_with_source(path, text_column, label_column, delimiter, min_classes=1, names=names)
        return check_labels_known(frame, source, label_column, label_map)

    if validation_path is None:
        if callable(validation_fraction):
            validation_fraction = validation_fraction(len(train), len(label_map))
        train, validation = stratified_split(train, validation_fraction, seed, source=train_path)
    else:
        validation = read_other(validation_path)
    test = read_other(test_path) if test_path is not None else None
    return LabeledData(train=train, validation=validation, test=test, label_map=label_map)
