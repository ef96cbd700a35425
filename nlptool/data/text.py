"""Plain texts from the user's files: one text a line, or a CSV column."""

from pathlib import Path

from nlptool.data.csv import DataError


def read_lines(path, column=None):
    """The lines of the UTF-8 text file `path` (empty lines kept, the final
    newline opening no extra line), or the values of CSV column `column`.
    Raises DataError naming the file when it is missing, not UTF-8, lacks
    the column, or holds no text at all."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Input file {path} does not exist.")
    if column is None:
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 text (byte {error.start}); pass a UTF-8 file.") from None
        if lines and lines[-1] == "":
            lines.pop()
        lines = [line.removesuffix("\r") for line in lines]
    else:
        import pandas as pd

        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise DataError(f"Cannot read {path} as CSV: {error}") from None
        if column not in frame.columns:
            raise DataError(f"{path} has no column {column!r}; its columns are {list(frame.columns)}.")
        lines = frame[column].tolist()
    if not any(line.strip() for line in lines):
        raise DataError(f"{path} holds no text.")
    return lines
