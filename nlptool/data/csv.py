"""Labelled text from user CSV files.

The user names the text and the label column; labels may be strings or
integers. `read_labeled_csv` reads one file into a frame with exactly the
columns "text" and "label", `LabelMap` maps labels to contiguous ids, and
`load_labeled_data` reads the training CSV plus optional validation and test
CSVs (or holds out a stratified validation split of the training CSV).

Bad input raises `DataError` with a message that names the file and, where it
applies, the data row (1-based, the row after the header is data row 1), the
line of the file it starts on (the header is line 1) and the column. Nothing
here writes files, so a failure never leaves a half-made run directory.
"""

import csv
import io
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

TEXT, LABEL = "text", "label"
SHOW_ROWS = 5  # offending rows listed in an error message; the rest are counted
DELIMITER_CANDIDATES = ("\t", ";", "|", ",")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class DataError(ValueError):
    """Bad input data: the message says what is wrong, in which file and where."""


def _delimiter_name(delimiter):
    return {"\t": "a tab ('\\t')", ",": "',' (comma)", ";": "';' (semicolon)", "|": "'|' (pipe)"}.get(
        delimiter, repr(delimiter)
    )


class _CsvSource:
    """The decoded text of one CSV file and a way to say where its data rows are.

    Line numbers are only worked out when an error needs them: Python's `csv`
    module re-reads the text (same delimiter and quoting as pandas) and records
    the physical line each record starts on, so quoted fields with embedded
    newlines are counted right. If its record count disagrees with the rows
    pandas read, messages fall back to data row numbers alone rather than
    print a wrong line.
    """

    def __init__(self, path, text, delimiter):
        self.path = path
        self.text = text
        self.delimiter = delimiter
        self.rows = None  # data rows pandas read, set once parsed

    @cached_property
    def _record_lines(self):
        starts, previous = [], 0
        try:
            reader = csv.reader(io.StringIO(self.text, newline=""), delimiter=self.delimiter)
            for record in reader:
                # pandas skips blank (and whitespace-only) lines; csv returns them as [] or ['  ']
                if record and not (len(record) == 1 and not record[0].strip()):
                    starts.append(previous + 1)
                previous = reader.line_num
        except csv.Error:  # e.g. a field above csv.field_size_limit(): no line numbers then
            return None
        return starts

    def line_of(self, row):
        """The 1-based line on which data row `row` (1-based) starts, or None if unknown."""
        starts = self._record_lines
        if starts is None or self.rows is None or len(starts) != self.rows + 1:
            return None
        return starts[row]

    def where(self, row):
        line = self.line_of(row)
        return f"data row {row}" if line is None else f"data row {row} (line {line})"

    def list_rows(self, rows, describe=None):
        """'data row 2 (line 3), data row 5 (line 7), ... (N in all)' for 1-based `rows`."""
        shown = []
        for row in rows[:SHOW_ROWS]:
            text = self.where(row)
            if describe is not None:
                text += f": {describe(row)}"
            shown.append(text)
        if len(rows) > SHOW_ROWS:
            return ", ".join(shown) + f", ... ({len(rows)} rows in all)"
        return ", ".join(shown) + (f" ({len(rows)} rows in all)" if len(rows) > 1 else "")


def _decode(path, raw):
    """UTF-8 text of a file's bytes (a leading byte-order mark is dropped)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
        line = raw.count(b"\n", 0, offset) + 1
        hint = ""
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = " It starts with a UTF-16 byte-order mark;"
        raise DataError(
            f"{path} is not UTF-8 text: undecodable byte 0x{raw[offset]:02x} at byte offset {offset} "
            f"(line {line}).{hint} Save the file as UTF-8."
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_header(source, text_column, label_column):
    """Catch a wrong delimiter from the header alone, before pandas parses the rows.

    With the wrong delimiter the header is one field holding the whole line
    (e.g. "text;label"); the data rows would otherwise fail with a confusing
    field-count error or land in one column.
    """
    try:
        header = next(r for r in csv.reader(io.StringIO(source.text, newline=""), delimiter=source.delimiter) if r)
    except (StopIteration, csv.Error):
        return
    if len(header) != 1 or header[0] in (text_column, label_column):
        return
    field = header[0]
    counts = {c: field.count(c) for c in DELIMITER_CANDIDATES if c != source.delimiter}
    best = max(counts, key=counts.get)
    if counts[best]:
        raise DataError(
            f"{source.path} looks delimited by {_delimiter_name(best)}, not {_delimiter_name(source.delimiter)}: "
            f"its header (line 1) reads as the single column {field!r}. Pass delimiter={best!r}."
        )
    if text_column in field or label_column in field:
        raise DataError(
            f"{source.path} has the single column {field!r} (line 1), which contains the column names "
            f"{text_column!r}/{label_column!r}: the delimiter is not {_delimiter_name(source.delimiter)}; "
            f"pass the file's delimiter with delimiter=."
        )


def _is_missing(value):
    return not isinstance(value, str) or not value.strip()


def _parse_labels(values):
    """Labels read as strings: integers if every label is written as one, else stripped strings."""
    stripped = [value.strip() for value in values]
    # "01" is not written as an integer, so 1 and "01" never collapse into one class
    if all(_INTEGER.fullmatch(value) and str(int(value)) == value.lstrip("+") for value in stripped):
        return [int(value) for value in stripped]
    return stripped


def _read_columns(path, columns, delimiter=None):
    """Read the named text columns of a CSV file, none of them empty in any row.

    `columns` maps each argument name (for messages, e.g. "text_column") to
    its column name. Returns (a frame with those columns as str, in file
    order, the `_CsvSource` for later messages).
    """
    names = list(columns.values())
    if not all(isinstance(name, str) for name in names):
        raise ValueError(
            f"Received an invalid value for arguments {list(columns)}, expected column names (strings), got {names}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"Received the same column for more than one of the arguments {list(columns)}: {names}.")
    if delimiter is None:
        delimiter = ","
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"Received an invalid value for argument `delimiter`, expected one character such as ',' or '\\t', "
            f"got {delimiter!r}."
        )
    path = Path(path)
    if not path.exists():
        raise DataError(f"CSV file {path} does not exist.")
    if not path.is_file():
        raise DataError(f"CSV path {path} is not a file.")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"CSV file {path} is empty (0 bytes); expected a header line and data rows.")
    source = _CsvSource(path, _decode(path, raw), delimiter)
    if not source.text.strip():
        raise DataError(f"CSV file {path} is empty (only blank lines); expected a header line and data rows.")
    _check_header(source, *names)

    try:
        # every column as str and no NA parsing: a review reading "NA" or "null" is text, not missing
        frame = pd.read_csv(io.StringIO(source.text), sep=delimiter, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"CSV file {path} is empty; expected a header line and data rows.") from None
    except pd.errors.ParserError as error:
        # pandas' own "line"/"row" numbers in these messages are its own counts; passed on as they are
        hint = (
            "An opening quote is never closed."
            if "EOF inside string" in str(error)
            else "Quote fields that contain the delimiter, or pass the right delimiter=."
        )
        raise DataError(
            f"Cannot parse {path} as CSV delimited by {_delimiter_name(delimiter)}: pandas says: {error}. {hint}"
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the first column into the index when data rows have one field more than the header
        raise DataError(
            f"{path}: data rows have more fields than the header (line 1) has columns {list(frame.columns)}. "
            f"Quote fields that contain the delimiter {_delimiter_name(delimiter)}."
        )
    source.rows = len(frame)
    existing = [str(c) for c in frame.columns]
    for argument, column in columns.items():
        if column not in frame.columns:
            raise DataError(f"{path} has no column {column!r} (argument `{argument}`); its columns are {existing}.")
    if frame.empty:
        raise DataError(f"CSV file {path} has a header but no data rows.")

    for argument, column in columns.items():
        what = argument.removesuffix("_column")
        rows = [i + 1 for i, value in enumerate(frame[column].tolist()) if _is_missing(value)]
        if rows:
            raise DataError(
                f"{path}: empty or missing {what} in column {column!r} at {source.list_rows(rows)}. "
                f"Every row needs a {what}; remove or fill these rows."
            )
    return frame[names].reset_index(drop=True), source


def _read(path, text_column, label_column, delimiter=None, min_classes=2):
    """`read_labeled_csv`, also returning the `_CsvSource` for later messages."""
    if isinstance(text_column, str) and text_column == label_column:
        raise ValueError(
            "Received an invalid value for argument `label_column`, expected a column other than the text column, "
            f"got {label_column!r} for both."
        )
    frame, source = _read_columns(path, {"text_column": text_column, "label_column": label_column}, delimiter)
    result = pd.DataFrame({TEXT: frame[text_column].tolist(), LABEL: _parse_labels(frame[label_column].tolist())})
    classes = result[LABEL].unique()
    if len(classes) < min_classes:
        raise DataError(
            f"{path}: column {label_column!r} holds a single class, {classes[0]!r}, in all {len(result)} rows; "
            f"a classifier needs at least two classes."
        )
    return result, source


def read_parallel_csv(path, source_column, target_column, delimiter=None):
    """Read sentence pairs from a CSV file into a frame with the columns
    "source" and "target" (str, in file order). Raises DataError as
    `read_labeled_csv` does, for the same faults (targets are text: "42"
    stays the string "42")."""
    frame, _ = _read_columns(path, {"source_column": source_column, "target_column": target_column}, delimiter)
    return pd.DataFrame({"source": frame[source_column].tolist(), "target": frame[target_column].tolist()})


def read_labeled_csv(path, text_column, label_column, delimiter=None, *, min_classes=2):
    """Read one labelled CSV file into a frame with the columns "text" and "label".

    Args:
        path: the CSV file, UTF-8 (a byte-order mark is allowed), with a header line.
        text_column: the name of the column holding the texts.
        label_column: the name of the column holding the labels. If every
            label is written as an integer the labels are Python ints,
            otherwise strings (with surrounding whitespace removed).
        delimiter: the field delimiter, one character; None means ','.
        min_classes: the fewest distinct labels accepted; 2 for training data,
            1 for e.g. a small test file that holds a single class.

    Returns:
        A pandas DataFrame with the columns "text" (str) and "label"; its
        index is the 0-based data row in the file (data row N is index N-1).

    Raises:
        DataError: the file is missing, empty, not UTF-8, looks delimited by
            another character, lacks a named column, has empty texts or
            labels, or holds fewer than `min_classes` classes.
    """
    return _read(path, text_column, label_column, delimiter, min_classes)[0]


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
    def from_labels(cls, values):
        """The map of the distinct labels in `values` (any iterable of ints or of strings)."""
        values = list(values)
        if not values:
            raise DataError("Cannot build a label map from no labels.")
        kind = _label_kind(values)
        distinct = {int(v) if kind == "int" else v for v in values}
        return cls(tuple(sorted(distinct)))

    @cached_property
    def _ids(self):
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def is_int(self):
        return _label_kind(self.labels) == "int"

    def __len__(self):
        return len(self.labels)

    @property
    def names(self):
        """The class names, str of each label, in id order."""
        return [str(label) for label in self.labels]

    def encode(self, values):
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

    def decode(self, ids):
        """The labels of the ids `ids`, as a list."""
        labels = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if not isinstance(i, int) or not 0 <= i < len(self.labels):
                raise ValueError(
                    f"Received an invalid value for argument `ids`, expected ids in [0, {len(self.labels)}), got {i!r}."
                )
            labels.append(self.labels[i])
        return labels

    def to_config(self):
        """A JSON-serialisable dict; `from_config` restores the map, ints as ints."""
        return {"labels": list(self.labels), "kind": "int" if self.is_int else "str"}

    @classmethod
    def from_config(cls, config):
        kind = config.get("kind", "str")
        if kind not in ("int", "str"):
            raise ValueError(f"Received an invalid value for config key `kind`, expected 'int' or 'str', got {kind!r}.")
        convert = int if kind == "int" else str
        return cls(tuple(convert(label) for label in config["labels"]))


def stratified_split(frame, fraction, seed, *, source=None):
    """Hold out `fraction` of `frame`'s rows with every class in the same proportion.

    Args:
        frame: a frame with a "label" column, e.g. from `read_labeled_csv`.
        fraction: the share of rows to hold out, in (0, 1).
        seed: the random seed; the same seed gives the same split.
        source: a name for the data in error messages, e.g. the CSV path.

    Returns:
        (train_frame, held_out_frame), each keeping `frame`'s index.

    Raises:
        DataError: a class has fewer than two rows, or the split would leave
            fewer rows than classes on one side.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(
            f"Received an invalid value for argument `fraction`, expected a number in (0, 1), got {fraction!r}."
        )
    from sklearn.model_selection import train_test_split

    where = f"{source}" if source is not None else "the data"
    counts = frame[LABEL].value_counts()
    rarest, fewest = counts.idxmin(), int(counts.min())
    if fewest < 2:
        raise DataError(
            f"Cannot make a stratified split of {where}: class {rarest!r} has only {fewest} row; every class needs "
            f"at least 2 (one to train on, one to hold out). Add rows or pass a separate validation CSV."
        )
    n_rows, n_classes = len(frame), len(counts)
    held_out = math.ceil(fraction * n_rows)  # what scikit-learn takes for a float test_size
    if held_out < n_classes or n_rows - held_out < n_classes:
        raise DataError(
            f"Cannot make a stratified split of {where}: holding out {fraction} of {n_rows} rows gives "
            f"{held_out} held-out and {n_rows - held_out} training rows, and each side needs at least one row of "
            f"each of the {n_classes} classes. Change the fraction or pass a separate validation CSV."
        )
    try:
        train, rest = train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame[LABEL])
    except ValueError as error:  # anything the checks above missed, still as a DataError
        raise DataError(f"Cannot make a stratified split of {where}: {error}") from None
    return train, rest


@dataclass(frozen=True)
class LabeledData:
    """Training, validation and (optional) test frames plus the training labels' map."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    label_map: LabelMap


def _check_known(frame, source, label_column, label_map):
    """Align a validation/test frame's labels to the training kind; DataError on labels unseen in training."""
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


def load_labeled_data(
    train_csv,
    text_column,
    label_column,
    validation_csv=None,
    test_csv=None,
    validation_fraction=0.1,
    seed=1234,
    delimiter=None,
):
    """Read the training data and its validation (and test) data.

    Args:
        train_csv: the training CSV file.
        text_column: the name of the text column in every file.
        label_column: the name of the label column in every file.
        validation_csv: a separate validation CSV; None holds out a stratified
            `validation_fraction` of the training CSV instead.
        test_csv: an optional test CSV.
        validation_fraction: the share of training rows held out when there
            is no `validation_csv`.
        seed: the seed of that split.
        delimiter: the field delimiter of every file; None means ','.

    Returns:
        A `LabeledData`; its `label_map` is built from the training labels.

    Raises:
        DataError: any file fails `read_labeled_csv`, the split is impossible,
            or a validation/test label does not occur in the training data.
    """
    train, _ = _read(train_csv, text_column, label_column, delimiter)
    label_map = LabelMap.from_labels(train[LABEL])
    if validation_csv is None:
        train, validation = stratified_split(train, validation_fraction, seed, source=train_csv)
    else:
        validation, source = _read(validation_csv, text_column, label_column, delimiter, min_classes=1)
        validation = _check_known(validation, source, label_column, label_map)
    test = None
    if test_csv is not None:
        test, source = _read(test_csv, text_column, label_column, delimiter, min_classes=1)
        test = _check_known(test, source, label_column, label_map)
    return LabeledData(train=train, validation=validation, test=test, label_map=label_map)
