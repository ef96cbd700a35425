"""Parsing the formats of the user's table files: CSV, TSV and JSON Lines.

`open_table` reads and decodes a file into a `TableSource`, which knows the
file's format and says where its data rows are; `parse_csv` and
`parse_json_lines` turn its text into a frame of strings. The format comes
from the extension: .csv is comma-separated, .tsv and .tab tab-separated,
.jsonl and .ndjson JSON Lines (one JSON object a line); any other extension
is read as CSV. Read files with `nlptool.data.files`, which parses through these.

Data rows are 1-based: a CSV file's header is not a data row, nor is a blank
line of a JSON Lines file. Lines are 1-based too: line 1 is the first line.
"""

import csv
import io
import json
import shlex
from functools import cached_property
from pathlib import Path

import pandas as pd

from nlptool.errors import DataError

SHOW_ROWS = 5  # offending rows listed in an error message; the rest are counted
DELIMITER_CANDIDATES = ("\t", ";", "|", ",")
JSON_LINES = "JSON Lines"
EXTENSIONS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".ndjson": None}  # None: JSON Lines


def _delimiter_name(delimiter):
    return {"\t": "a tab ('\\t')", ",": "',' (comma)", ";": "';' (semicolon)", "|": "'|' (pipe)"}.get(
        delimiter, repr(delimiter)
    )


def delimiter_option(delimiter):
    """How `--delimiter` spells `delimiter` on the command line ("tab" for a tab)."""
    return "tab" if delimiter == "\t" else shlex.quote(delimiter)


def file_format(path, delimiter=None):
    """(the kind for messages, "CSV", "TSV" or JSON_LINES; the delimiter, None for JSON Lines).

    An explicit `delimiter` wins over a .csv/.tsv/.tab extension; JSON Lines
    has no delimiter, so it ignores one.
    """
    suffix = Path(path).suffix.lower()
    if suffix in EXTENSIONS and EXTENSIONS[suffix] is None:
        return JSON_LINES, None
    delimiter = delimiter or EXTENSIONS.get(suffix, ",")
    return ("TSV" if delimiter == "\t" else "CSV"), delimiter


class TableSource:
    """One table file's decoded text and a way to say where its data rows are.

    For JSON Lines the line of each data row is known from the parse. For
    CSV/TSV it is only worked out when an error needs it: Python's `csv`
    module re-reads the text (same delimiter and quoting as pandas) and
    records the physical line each record starts on, so quoted fields with
    embedded newlines are counted right. If its record count disagrees with
    the rows pandas read, messages fall back to data row numbers alone rather
    than print a wrong line.
    """

    def __init__(self, path, kind, text, delimiter=None):
        self.path = Path(path)
        self.kind = kind
        self.text = text
        self.delimiter = delimiter
        self.rows = None  # data rows read, set once parsed
        self.data_lines = None  # JSON Lines: the line of each data row

    @cached_property
    def _csv_lines(self):
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
        return starts[1:]  # the header is no data row

    def line_of(self, row):
        """The 1-based line on which data row `row` (1-based) starts, or None if unknown."""
        lines = self.data_lines if self.kind == JSON_LINES else self._csv_lines
        if lines is None or self.rows is None or len(lines) != self.rows:
            return None
        return lines[row - 1]

    def where(self, row):
        line = self.line_of(row)
        return f"data row {row}" if line is None else f"data row {row} (line {line})"

    def list_rows(self, rows, describe=None):
        """'data row 2 (line 3), data row 5 (line 7), ... (N rows in all)' for 1-based `rows`."""
        shown = []
        for row in rows[:SHOW_ROWS]:
            text = self.where(row)
            if describe is not None:
                text += f": {describe(row)}"
            shown.append(text)
        if len(rows) > SHOW_ROWS:
            return ", ".join(shown) + f", ... ({len(rows)} rows in all)"
        return ", ".join(shown) + (f" ({len(rows)} rows in all)" if len(rows) > 1 else "")


def decode(path, raw):
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


def open_table(path, delimiter=None):
    """The `TableSource` of the table file `path`, read and decoded; its
    format as `file_format` says. Raises DataError when the file is missing,
    empty (or only blank lines) or not UTF-8."""
    path = Path(path)
    kind, delimiter = file_format(path, delimiter)
    expected = "one JSON object a line" if kind == JSON_LINES else "a header line and data rows"
    if not path.exists():
        raise DataError(f"{kind} file {path} does not exist.")
    if not path.is_file():
        raise DataError(f"{kind} path {path} is not a file.")
    raw = path.read_bytes()
    if not raw:
        raise DataError(f"{kind} file {path} is empty (0 bytes); expected {expected}.")
    source = TableSource(path, kind, decode(path, raw), delimiter)
    if not source.text.strip():
        raise DataError(f"{kind} file {path} is empty (only blank lines); expected {expected}.")
    return source


def _check_header(source, names):
    """Catch a wrong delimiter from the header alone, before pandas parses the rows.

    With the wrong delimiter the header is one field holding the whole line
    (e.g. "text;label"); the data rows would otherwise fail with a confusing
    field-count error or land in one column.
    """
    try:
        header = next(r for r in csv.reader(io.StringIO(source.text, newline=""), delimiter=source.delimiter) if r)
    except (StopIteration, csv.Error):
        return
    repeated = sorted({name for name in names if header.count(name) > 1})
    if repeated:
        columns = [i + 1 for i, field in enumerate(header) if field == repeated[0]]
        raise DataError(
            f"{source.path}: the header (line 1) names the column {repeated[0]!r} more than once "
            f"(columns {', '.join(map(str, columns))}); rename all but one."
        )
    if len(header) != 1 or header[0] in names:
        return
    field = header[0]
    counts = {c: field.count(c) for c in DELIMITER_CANDIDATES if c != source.delimiter}
    best = max(counts, key=counts.get)
    if counts[best]:
        raise DataError(
            f"{source.path} looks delimited by {_delimiter_name(best)}, not {_delimiter_name(source.delimiter)}: "
            f"its header (line 1) reads as the single column {field!r}. Pass delimiter={best!r} "
            f"(--delimiter {delimiter_option(best)} on the command line)."
        )
    if any(name in field for name in names):
        raise DataError(
            f"{source.path} has the single column {field!r} (line 1), which contains the column names "
            f"{'/'.join(map(repr, names))}: the delimiter is not {_delimiter_name(source.delimiter)}; "
            f"pass the file's delimiter with delimiter= (--delimiter on the command line)."
        )


def parse_csv(source, columns):
    """The frame of every column of a CSV/TSV file (str values), checked for the columns named."""
    path, delimiter = source.path, source.delimiter
    _check_header(source, list(columns.values()))
    try:
        # every column as str and no NA parsing: a review reading "NA" or "null" is text, not missing
        frame = pd.read_csv(io.StringIO(source.text), sep=delimiter, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.kind} file {path} is empty; expected a header line and data rows.") from None
    except pd.errors.ParserError as error:
        # pandas' own "line"/"row" numbers in these messages are its own counts; passed on as they are
        hint = (
            "An opening quote is never closed."
            if "EOF inside string" in str(error)
            else "Quote fields that contain the delimiter, or pass the right delimiter=."
        )
        raise DataError(
            f"Cannot parse {path} as {source.kind} delimited by {_delimiter_name(delimiter)}: pandas says: {error}. "
            f"{hint}"
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the first column into the index when data rows have one field more than the header
        raise DataError(
            f"{path}: data rows have more fields than the header (line 1) has columns {list(frame.columns)}. "
            f"Quote fields that contain the delimiter {_delimiter_name(delimiter)}."
        )
    existing = [str(c) for c in frame.columns]
    for argument, column in columns.items():
        if column not in frame.columns:
            raise DataError(f"{path} has no column {column!r} (argument `{argument}`); its columns are {existing}.")
    if frame.empty:
        raise DataError(f"{source.kind} file {path} has a header but no data rows.")
    return frame


def _json_type(value):
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_json_lines(source, columns, integer_columns):
    """The frame of the columns named (str values) of a JSON Lines file, one object a line."""
    path, names = source.path, list(columns.values())
    values, lines, missing, keys = {name: [] for name in names}, [], {name: [] for name in names}, {}
    # split on "\n" alone: str.splitlines would also split at U+2028 and the like, which JSON strings may hold raw
    for number, line in enumerate(source.text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            # strict=False: a raw tab (or other control character) pasted into a string is still its text
            record = json.loads(line, strict=False)
        except json.JSONDecodeError as error:
            hint = ""
            if not lines and line.strip() in ("[", "{"):
                hint = " The file looks like one JSON document spread over lines, not JSON Lines."
            raise DataError(
                f"{path}: line {number} is not valid JSON: {error.msg} (column {error.colno}). "
                f"Each line must be one JSON object.{hint}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}: line {number} holds {_json_type(record)}, not an object; each line must be one JSON "
                f"object with the keys {names}."
            )
        lines.append(number)
        keys.update(dict.fromkeys(record))
        for argument, column in columns.items():
            value = record.get(column)
            if column not in record:
                missing[column].append(len(lines))
            elif isinstance(value, int) and not isinstance(value, bool) and column in integer_columns:
                value = str(value)  # as a CSV file would hold it, so labels parse alike
            elif not isinstance(value, str):
                expected = "a string or an integer" if column in integer_columns else "a string"
                shown = json.dumps(value, ensure_ascii=False)
                shown = shown if len(shown) <= 40 else shown[:37] + "..."
                kind = "" if value is None else f" ({_json_type(value)})"
                raise DataError(
                    f"{path}: line {number}: key {column!r} (argument `{argument}`) holds {shown}{kind}; "
                    f"expected {expected}."
                )
            values[column].append(value)
    source.data_lines, source.rows = lines, len(lines)
    for argument, column in columns.items():
        if len(missing[column]) == len(lines):
            raise DataError(
                f"{path} has no key {column!r} (argument `{argument}`) in any line; its keys are {list(keys)}."
            )
        if missing[column]:
            raise DataError(
                f"{path}: key {column!r} (argument `{argument}`) is missing at {source.list_rows(missing[column])}. "
                f"Every line needs it."
            )
    return pd.DataFrame(values)
