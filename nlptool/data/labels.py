"""Labelled text from the user's files, and the map of labels to class ids.

The user names the text and the label column; labels may be strings or
integers. `read_labeled` reads one CSV, TSV or JSON Lines file (see
`nlptool.data.files`) into a frame with exactly the columns "text" and
"label"; `LabelMap` maps labels to contiguous ids; `check_labels_known`
checks a validation or test file's labels against the training labels.
"""

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from nlptool.data.files import argument_names, read_table_with_source
from nlptool.data.formats import TableSource
from nlptool.errors import DataError

TEXT, LABEL = "text", "label"
_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_labels(values: Iterable[str]) -> list[int] | list[str]:
    """Labels read as strings: integers if every label is written as one, else stripped strings."""
    stripped = [value.strip() for value in values]
    # "01" is not written as an integer, so 1 and "01" never collapse into one class
    if all(_INTEGER.fullmatch(value) and str(int(value)) == value.lstrip("+") for value in stripped):
        return [int(value) for value in stripped]
    return stripped


def read_labeled_with_source(
    path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    delimiter: str | None = None,
    *,
    min_classes: int = 2,
    names: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, TableSource]:
    """`read_labeled`, also returning the file's `TableSource` for later messages."""
    names = argument_names(names, (TEXT, LABEL))
    if isinstance(text_column, str) and text_column == label_column:
        raise DataError(
            f"Received an invalid value for argument `{names[LABEL]}`, expected a column other than the text "
            f"column, got {label_column!r} for both."
        )
    frame, source = read_table_with_source(
        path, {names[TEXT]: text_column, names[LABEL]: label_column}, delimiter, integer_columns=(label_column,)
    )
    result = pd.DataFrame({TEXT: frame[text_column].tolist(), LABEL: parse_labels(frame[label_column].tolist())})
    classes = result[LABEL].unique()
    if len(classes) < min_classes:
        raise DataError(
            f"{path}: column {label_column!r} holds a single class, {classes[0]!r}, in all {len(result)} rows; "
            f"a classifier needs at least two classes."
        )
    return result, source


def read_labeled(
    path: str | os.PathLike[str],
    text_column: str,
    label_column: str,
    delimiter: str | None = None,
    *,
    min_classes: int = 2,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read one labelled file into a frame with the columns "text" and "label".

    Args:
        path: a CSV or TSV file with a header line, or a JSON Lines file (by
            its extension, as `nlptool.data.read_table` reads it), UTF-8.
        text_column: the name of the column holding the texts.
        label_column: the name of the column holding the labels (strings; in
            JSON Lines, strings or integers). If every label is written as an
            integer the labels are Python ints, otherwise strings (with
            surrounding whitespace removed).
        delimiter: the field delimiter of a CSV/TSV file, one character; None
            takes it from the extension (',' unless .tsv or .tab).
        min_classes: the fewest distinct labels accepted; 2 for training data,
            1 for e.g. a small test file that holds a single class.
        names: how messages name the column arguments: maps "text"/"label"
            to e.g. "--text-column"; default "text_column"/"label_column".

    Returns:
        A pandas DataFrame with the columns "text" (str) and "label"; its
        index is the 0-based data row in the file (data row N is index N-1).

    Raises:
        DataError: the file is missing, empty, not UTF-8, looks delimited by
            another character, lacks a named column, has empty texts or
            labels (or NUL bytes), or holds fewer than `min_classes` classes.
        ValueError: the text and label columns are the same.
    """
    return read_labeled_with_source(path, text_column, label_column, delimiter, min_classes=min_classes, names=names)[0]


def _label_kind(values):
    """'int' or 'str' for a collection of labels; DataError if mixed or of another type."""
    kinds = set()
    for value in values:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            kinds.add("int")
        elif isinstance(value, str):
            kinds.add("str")
        else:
            raise DataError(f"Labels must be integers or strings, got {type(value).__name__} {value!r}.")
    if len(kinds) > 1:
        examples = sorted({repr(v) for v in values}, key=len)[:6]
        raise DataError(f"Labels mix integers and strings ({', '.join(examples)}); use one kind for all labels.")
    return kinds.pop() if kinds else "str"


@dataclass(frozen=True)
class LabelMap:
    """Labels <-> contiguous int ids 0..n-1, in sorted label order.

    Integer labels sort numerically, string labels lexicographically, so the
    same label set always gets the same ids, whatever order the rows come in.
    """

    labels: tuple

    @classmethod
    def from_labels(cls, values: Iterable[int | str]) -> "LabelMap":
        """The map of the distinct labels in `values` (any iterable of ints or of strings)."""
        values = list(values)
        if not values:
            raise DataError("Cannot build a label map from no labels.")
        kind = _label_kind(values)
        distinct: set[Any] = {int(v) if kind == "int" else v for v in values}  # all ints or all strs: sortable
        return cls(tuple(sorted(distinct)))

    @cached_property
    def _ids(self) -> dict[int | str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def is_int(self) -> bool:
        return _label_kind(self.labels) == "int"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> list[str]:
        """The class names, str of each label, in id order."""
        return [str(label) for label in self.labels]

    def encode(self, values: Iterable[int | str]) -> npt.NDArray[np.int32]:
        """Ids (int32 array) of the labels `values`; DataError for a label not in the map."""
        is_int = self.is_int
        ids = []
        for value in values:
            # the map is built from ints or strs only: "1" must not find 1, nor 1 find "1"
            key_ok = isinstance(value, (int, np.integer)) if is_int else isinstance(value, str)
            key = int(value) if is_int and key_ok else value
            if not key_ok or key not in self._ids:
                raise DataError(f"Unknown label {value!r}; the known labels are {list(self.labels)}.")
            ids.append(self._ids[key])
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: npt.ArrayLike) -> list[int | str]:
        """The labels of the ids `ids`, as a list."""
        labels = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not isinstance(i, int) or not 0 <= i < len(self.labels):
                raise ValueError(
                    f"Received an invalid value for argument `ids`, expected ids in [0, {len(self.labels)}), got {i!r}."
                )
            labels.append(self.labels[i])
        return labels

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable dict; `from_config` restores the map, ints as ints."""
        return {"labels": list(self.labels), "kind": "int" if self.is_int else "str"}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LabelMap":
        kind = config.get("kind", "str")
        if kind not in ("int", "str"):
            raise ValueError(f"Received an invalid value for config key `kind`, expected 'int' or 'str', got {kind!r}.")
        convert = int if kind == "int" else str
        return cls(tuple(convert(label) for label in config["labels"]))


def check_labels_known(
    frame: pd.DataFrame, source: TableSource, label_column: str, label_map: LabelMap
) -> pd.DataFrame:
    """`frame` (read from `source`) with its labels of the training labels' kind.

    Args:
        frame: a validation or test frame from `read_labeled_with_source`.
        source: its `TableSource`, to name the offending rows and lines.
        label_column: the label column's name in the file, for messages.
        label_map: the training labels' map.

    Returns:
        `frame`, its labels made strings when the training labels are strings.

    Raises:
        DataError: a label does not occur in the training labels.
    """
    if not label_map.is_int:
        # training labels are strings, so "1" in a validation file means the string "1"
        frame = frame.assign(**{LABEL: [str(v) for v in frame[LABEL]]})
    known = set(label_map.labels)
    labels = frame[LABEL].tolist()
    rows = [i + 1 for i, value in enumerate(labels) if value not in known]
    if rows:
        listing = source.list_rows(rows, describe=lambda row: repr(labels[row - 1]))
        raise DataError(
            f"{source.path}: column {label_column!r} has labels absent from the training data at {listing}. "
            f"The training labels are {list(label_map.labels)}."
        )
    return frame
