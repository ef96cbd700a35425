"""Reading the user's table files (CSV, TSV, JSON Lines) and text files.

`read_table` reads the named columns of one table file into a frame of
strings, the format by the file's extension (see `nlptool.data.formats`);
`read_lines` reads the texts of a plain text file (one a line) or of one
column of a table file; `read_parallel` reads sentence pairs.

Bad input raises `DataError` with a message that names the file and, where it
applies, the data row (1-based: a CSV file's header is not a data row, nor is
a blank line of a JSON Lines file), the line of the file it starts on (line 1
is the first line) and the column. Nothing here writes files, so a failure
never leaves a half-made run directory.
"""

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from nlptool.data.formats import JSON_LINES, SHOW_ROWS, TableSource, decode, open_table, parse_csv, parse_json_lines
from nlptool.errors import DataError


def _what(argument):
    """'text' for the argument names 'text_column' and '--text-column': what a column holds, for messages."""
    what = argument.lstrip("-").removesuffix("_column").removesuffix("-column")
    return "value" if what == "column" else what  # "empty column in column 'x'" would read oddly


def read_table_with_source(
    path: str | os.PathLike[str],
    columns: Mapping[str, str],
    delimiter: str | None = None,
    *,
    integer_columns: Iterable[str] = (),
    allow_empty: bool = False,
) -> tuple[pd.DataFrame, TableSource]:
    """`read_table`, also returning the file's `TableSource`, which names data
    rows with their lines in later messages (e.g. about unknown labels)."""
    names = list(columns.values())
    if not names or not all(isinstance(name, str) for name in names):
        raise DataError(
            f"Received an invalid value for arguments {list(columns)}, expected column names (strings), got {names}."
        )
    if len(set(names)) != len(names):
        raise DataError(f"Received the same column for more than one of the arguments {list(columns)}: {names}.")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n'):
        raise DataError(
            f"Received an invalid value for argument `delimiter`, expected one character such as ',' or '\\t', "
            f"got {delimiter!r}."
        )
    source = open_table(path, delimiter)
    if source.kind == JSON_LINES:
        frame = parse_json_lines(source, columns, set(integer_columns))
    else:
        frame = parse_csv(source, columns)
        source.rows = len(frame)

    result = {}
    for argument, column in columns.items():
        # the fields a CSV row lacks may come as NaN rather than "" from pandas: empty values either way
        what, values = _what(argument), [v if isinstance(v, str) else "" for v in frame[column].tolist()]
        rows = [] if allow_empty else [i + 1 for i, v in enumerate(values) if not v.strip()]
        if rows:
            raise DataError(
                f"{path}: empty or missing {what} in column {column!r} at {source.list_rows(rows)}. "
                f"Every row needs a {what}; remove or fill these rows."
            )
        rows = [i + 1 for i, v in enumerate(values) if "\x00" in v]
        if rows:
            # text with NUL bytes breaks TensorFlow string ops later on, far from the file that held it
            raise DataError(
                f"{path}: NUL byte ('\\x00') in column {column!r} at {source.list_rows(rows)}. "
                f"Remove the NUL bytes from the {what}."
            )
        result[column] = values
    return pd.DataFrame(result), source


def read_table(
    path: str | os.PathLike[str],
    columns: Mapping[str, str],
    delimiter: str | None = None,
    *,
    integer_columns: Iterable[str] = (),
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Read the named columns of one of the user's table files.

    Args:
        path: a UTF-8 file (a byte-order mark is allowed): CSV or TSV with a
            header line, or JSON Lines, by its extension (see the module).
        columns: maps the name by which messages refer to each column (e.g.
            "text_column", or "--text-column" on the command line) to the
            column's name in the file (a JSON Lines key).
        delimiter: the field delimiter of a CSV/TSV file, one character; None
            takes it from the extension (',' for any but .tsv/.tab). Ignored
            for JSON Lines.
        integer_columns: columns (file names) whose JSON Lines values may be
            integers as well as strings, e.g. labels; read as their digits.
        allow_empty: accept empty and whitespace-only values, and CSV rows
            short of fields (a JSON Lines key must still be there).

    Returns:
        A pandas DataFrame with exactly the columns `columns` names, in that
        order, str values in file order, index 0..n-1 (data row N is N-1).

    Raises:
        DataError: the file is missing, empty, not UTF-8, looks delimited by
            another character, lacks a column (key), has a line that is not a
            JSON object or a value that is not a string, an empty value, a
            NUL byte, or more fields in its rows than in its header.
        ValueError: `columns` or `delimiter` is not valid.
    """
    return read_table_with_source(path, columns, delimiter, integer_columns=integer_columns, allow_empty=allow_empty)[0]


def read_lines(
    path: str | os.PathLike[str], column: str | None = None, delimiter: str | None = None, name: str = "column"
) -> list[str]:
    """The texts of a file: its lines, or the values of one column of a table file.

    Args:
        path: a UTF-8 file.
        column: None reads `path` as plain text, whatever its extension, one
            text a line (empty lines kept, a final newline opening no extra
            line, "\\r" before a newline dropped); a column name reads that
            column of a CSV, TSV or JSON Lines file as `read_table` does,
            empty values kept.
        delimiter: the delimiter of a CSV/TSV file, as for `read_table`.
        name: how messages name the column argument (a flag, say).

    Returns:
        A list of str, in file order.

    Raises:
        DataError: the file is missing, not UTF-8, holds a NUL byte, fails
            `read_table`, or holds no text at all.
    """
    if column is not None:
        lines = read_table(path, {name: column}, delimiter, allow_empty=True)[column].tolist()
    else:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Input file {path} does not exist.")
        lines = decode(path, path.read_bytes()).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lines = [line.removesuffix("\r") for line in lines]
        nul = [i + 1 for i, line in enumerate(lines) if "\x00" in line]
        if nul:
            shown = ", ".join(map(str, nul[:SHOW_ROWS])) + (
                f", ... ({len(nul)} lines in all)" if len(nul) > SHOW_ROWS else ""
            )
            where = "line" if len(nul) == 1 else "lines"
            raise DataError(f"{path}: NUL byte ('\\x00') on {where} {shown}. Remove the NUL bytes.")
    if not any(line.strip() for line in lines):
        raise DataError(f"{path} holds no text.")
    return lines


def read_parallel(
    path: str | os.PathLike[str],
    source_column: str,
    target_column: str,
    delimiter: str | None = None,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read sentence pairs from a table file.

    Args:
        path: a CSV, TSV or JSON Lines file, as for `read_table`.
        source_column: the column of the source sentences.
        target_column: the column of the target sentences.
        delimiter: the delimiter of a CSV/TSV file, as for `read_table`.
        names: how messages name the arguments: maps "source"/"target" to
            e.g. "--source-column"; default "source_column"/"target_column".

    Returns:
        A pandas DataFrame with the columns "source" and "target" (str, in
        file order; a target "42" stays the string "42").

    Raises:
        DataError: as `read_table`, e.g. for an empty source or target.
    """
    names = argument_names(names, ("source", "target"))
    frame = read_table(path, {names["source"]: source_column, names["target"]: target_column}, delimiter)
    return pd.DataFrame({"source": frame[source_column].tolist(), "target": frame[target_column].tolist()})


def argument_names(names: Mapping[str, str] | None, roles: Iterable[str]) -> dict[str, str]:
    """role -> the argument name messages use: `names` over the default f"{role}_column"."""
    names = dict(names or {})
    unknown = sorted(set(names) - set(roles))
    if unknown:
        raise ValueError(
            f"Received an invalid value for argument `names`, expected keys among {list(roles)}, got {unknown}."
        )
    return {role: names.get(role, f"{role}_column") for role in roles}
