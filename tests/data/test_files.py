"""Reading the user's table and text files: nlptool.data.files (CSV, TSV, JSON Lines)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json

import pytest

from nlptool.data import DataError, read_lines, read_table
from nlptool.data.files import read_parallel

TEXT_LABEL = {"text_column": "text", "label_column": "label"}


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def jsonl(*records):
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


# --- CSV and TSV ---------------------------------------------------------------------------------------------------


def test_columns_as_strings_in_file_order(tmp_path):
    path = write(tmp_path, "s.csv", "id,review,sentiment\n1,great film,pos\n2,NA,1\n3,42, neg \n")
    frame = read_table(path, {"label_column": "sentiment", "text_column": "review"})
    assert list(frame.columns) == ["sentiment", "review"]  # the order of `columns`, only those
    assert frame["review"].tolist() == ["great film", "NA", "42"]  # "NA" and "42" stay text
    assert frame["sentiment"].tolist() == ["pos", "1", " neg "]
    assert frame.index.tolist() == [0, 1, 2]


def test_quoted_multiline_fields_and_utf8(tmp_path):
    content = (
        "text,label\n"
        '"Ein schöner Film, wirklich.\nZweite Zeile",pos\n'
        '"这部电影很好看 😀",pos\n'
        '"He said ""meh"", then left",neg\n'
    )
    path = write(tmp_path, "u.csv", "\ufeff" + content)  # with a byte-order mark, as Excel writes
    frame = read_table(path, TEXT_LABEL)
    assert frame["text"].tolist() == [
        "Ein schöner Film, wirklich.\nZweite Zeile",
        "这部电影很好看 😀",
        'He said "meh", then left',
    ]
    assert frame["label"].tolist() == ["pos", "pos", "neg"]


def test_tsv_by_extension(tmp_path):
    for name in ("t.tsv", "t.tab", "T.TSV"):
        path = write(tmp_path, name, "text\tlabel\nhello, world\t1\nbye; now\t0\n")
        frame = read_table(path, TEXT_LABEL)
        assert frame["text"].tolist() == ["hello, world", "bye; now"]
        assert frame["label"].tolist() == ["1", "0"]
    # an explicit tab on a .tsv file changes nothing
    assert read_table(tmp_path / "t.tsv", TEXT_LABEL, delimiter="\t")["text"].tolist() == ["hello, world", "bye; now"]


def test_delimiter_overrides_extension(tmp_path):
    path = write(tmp_path, "semi.tsv", "text;label\ngood\tfun;1\nbad;0\n")
    assert read_table(path, TEXT_LABEL, delimiter=";")["text"].tolist() == ["good\tfun", "bad"]
    path = write(tmp_path, "tabs.csv", "text\tlabel\ngood, fun\t1\n")
    assert read_table(path, TEXT_LABEL, delimiter="\t")["text"].tolist() == ["good, fun"]
    # any other extension is CSV
    path = write(tmp_path, "data.txt", "text,label\na,1\n")
    assert read_table(path, TEXT_LABEL)["text"].tolist() == ["a"]


def test_caller_names_the_arguments(tmp_path):
    path = write(tmp_path, "cli.csv", "review,label\n,pos\n")
    with pytest.raises(DataError) as info:
        read_table(path, {"--text-column": "review", "--label-column": "label"})
    assert "cli.csv: empty or missing text in column 'review' at data row 1 (line 2)." in str(info.value)
    with pytest.raises(DataError, match=r"no column 'text' \(argument `--text-column`\)"):
        read_table(path, {"--text-column": "text"})


# --- CSV and TSV errors: one test per case -------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="CSV file .*nothere.csv does not exist"):
        read_table(tmp_path / "nothere.csv", TEXT_LABEL)
    with pytest.raises(DataError, match="TSV file .*nothere.tsv does not exist"):
        read_table(tmp_path / "nothere.tsv", TEXT_LABEL)
    with pytest.raises(DataError, match="is not a file"):
        read_table(tmp_path, TEXT_LABEL)


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv is empty \(0 bytes\)"):
        read_table(path, TEXT_LABEL)
    path = write(tmp_path, "blank.csv", "\n\n")
    with pytest.raises(DataError, match=r"blank\.csv is empty"):
        read_table(path, TEXT_LABEL)


def test_header_only(tmp_path):
    path = write(tmp_path, "header.csv", "text,label\n")
    with pytest.raises(DataError, match=r"header\.csv has a header but no data rows"):
        read_table(path, TEXT_LABEL)


def test_undecodable_bytes(tmp_path):
    # Latin-1 "ä" (0xe4) on line 4, after a multi-line quoted field on lines 2-3
    raw = b'text,label\n"first\nline",1\ncaf\xe4,0\n'
    path = write(tmp_path, "latin1.csv", raw)
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "latin1.csv is not UTF-8" in message
    assert "0xe4" in message
    offset = raw.index(b"\xe4")
    assert f"byte offset {offset}" in message
    assert "(line 4)" in message


def test_wrong_delimiter(tmp_path):
    path = write(tmp_path, "semi.csv", "text;label\ngood, really;1\nbad;0\n")
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "semi.csv looks delimited by ';'" in message
    assert "delimiter=';' (--delimiter ';' on the command line)" in message  # both spellings of the advice
    assert "'text;label'" in message

    path = write(tmp_path, "tabs.csv", "text\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match=r"tabs\.csv looks delimited by a tab.*delimiter='\\t' \(--delimiter tab on"):
        read_table(path, TEXT_LABEL)
    path = write(tmp_path, "commas.tsv", "text,label\ngood,1\n")
    with pytest.raises(DataError, match=r"commas\.tsv looks delimited by ',' \(comma\), not a tab.*delimiter=','"):
        read_table(path, TEXT_LABEL)


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "cols.csv", "id,review,stars\n1,good,5\n")
    with pytest.raises(DataError) as info:
        read_table(path, {"text_column": "review", "label_column": "sentiment"})
    message = str(info.value)
    assert "cols.csv has no column 'sentiment'" in message
    assert "`label_column`" in message
    assert "['id', 'review', 'stars']" in message
    with pytest.raises(DataError, match=r"cols\.csv has no column 'text'.*\['id', 'review', 'stars'\]"):
        read_table(path, {"text_column": "text", "label_column": "stars"})


def test_empty_text_names_rows_lines_and_column(tmp_path):
    content = (
        "review,label\n"  # line 1
        '"two\nlines",pos\n'  # lines 2-3, data row 1
        ",neg\n"  # line 4, data row 2: empty
        '"   ",pos\n'  # line 5, data row 3: whitespace only
        "fine,neg\n"  # line 6, data row 4
        "\n"  # line 7, blank: pandas skips it
        ",pos\n"  # line 8, data row 5: empty
    )
    path = write(tmp_path, "texts.csv", content)
    with pytest.raises(DataError) as info:
        read_table(path, {"text_column": "review", "label_column": "label"})
    message = str(info.value)
    assert "texts.csv" in message
    assert "empty or missing text in column 'review'" in message
    assert "data row 2 (line 4), data row 3 (line 5), data row 5 (line 8) (3 rows in all)" in message


def test_many_empty_texts_are_counted(tmp_path):
    path = write(tmp_path, "many.csv", "text,label\n" + ",1\n" * 8 + "ok,0\n")
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "data row 5 (line 6), ... (8 rows in all)" in message
    assert "data row 6" not in message


def test_rows_without_line_numbers_when_lines_cannot_be_counted(tmp_path):
    # a field above csv.field_size_limit() stops the line count: rows are then named without a line
    path = write(tmp_path, "long.csv", "text,label\n" + "x" * 200_000 + ",1\n,0\n")
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "long.csv: empty or missing text in column 'text' at data row 2." in message
    assert "line" not in message.split("at data row")[1]


def test_unclosed_quote(tmp_path):
    path = write(tmp_path, "quote.csv", 'text,label\na,1\n"never closed,0\nb,1\n')
    with pytest.raises(DataError, match=r"Cannot parse .*quote\.csv.*An opening quote is never closed"):
        read_table(path, TEXT_LABEL)


def test_missing_fields(tmp_path):
    # data row 2 has no label field at all, data row 3 an empty one
    path = write(tmp_path, "labels.csv", "text,label\ngood,1\nbad\nso-so,\nok,0\n")
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "labels.csv" in message
    assert "empty or missing label in column 'label'" in message
    assert "data row 2 (line 3), data row 3 (line 4) (2 rows in all)" in message
    # unless empty values are allowed
    assert read_table(path, TEXT_LABEL, allow_empty=True)["label"].tolist() == ["1", "", "", "0"]


def test_more_fields_than_header(tmp_path):
    path = write(tmp_path, "extra.csv", "text,label\nhello, world,1\nbye, now,0\n")
    with pytest.raises(DataError, match=r"extra\.csv: data rows have more fields than the header"):
        read_table(path, TEXT_LABEL)


def test_nul_bytes_name_row_and_column(tmp_path):
    path = write(tmp_path, "nul.csv", 'text,label\nfine,1\n"two\nlines\x00",0\nbad\x00,1\n')
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "nul.csv: NUL byte ('\\x00') in column 'text' at data row 2 (line 3), data row 3 (line 5)" in message
    assert "(2 rows in all)" in message
    path = write(tmp_path, "nul.tsv", "text\tlabel\nfine\tpos\x00\n")
    with pytest.raises(DataError, match=r"nul\.tsv: NUL byte .* in column 'label' at data row 1 \(line 2\)\."):
        read_table(path, TEXT_LABEL)


def test_invalid_arguments(tmp_path):
    path = write(tmp_path, "ok.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(ValueError, match="argument `delimiter`"):
        read_table(path, TEXT_LABEL, delimiter=";;")
    with pytest.raises(ValueError, match="same column"):
        read_table(path, {"text_column": "text", "label_column": "text"})
    with pytest.raises(ValueError, match="expected column names"):
        read_table(path, {"text_column": 0})


# --- JSON Lines ----------------------------------------------------------------------------------------------------


def test_json_lines(tmp_path):
    content = (
        jsonl({"text": "Ein schöner Film,\nwirklich", "label": "pos", "id": 1}, {"label": 0, "text": "dull\t😀"})
        + "\n   \n"  # blank lines are skipped
        + '{"text": "last", "label": -3}'  # no final newline
    )
    for name in ("r.jsonl", "r.ndjson"):
        path = write(tmp_path, name, "\ufeff" + content)
        frame = read_table(path, TEXT_LABEL, integer_columns=("label",))
        assert list(frame.columns) == ["text", "label"]
        assert frame["text"].tolist() == ["Ein schöner Film,\nwirklich", "dull\t😀", "last"]
        assert frame["label"].tolist() == ["pos", "0", "-3"]  # integers as a CSV file would hold them
    # a delimiter means nothing to JSON Lines
    assert read_table(path, TEXT_LABEL, delimiter=";", integer_columns=("label",))["text"].tolist()[-1] == "last"


def test_json_lines_bad_line_names_its_line(tmp_path):
    path = write(tmp_path, "bad.jsonl", jsonl({"text": "a", "label": "x"}) + "\n" + '{"text": "b", "label": }\n')
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "bad.jsonl: line 3 is not valid JSON: Expecting value (column 24)" in message
    assert "Each line must be one JSON object." in message

    path = write(tmp_path, "pretty.jsonl", '[\n  {"text": "a", "label": "x"}\n]\n')
    with pytest.raises(DataError, match=r"line 1 is not valid JSON.*one JSON document spread over lines"):
        read_table(path, TEXT_LABEL)


def test_json_lines_line_not_an_object(tmp_path):
    path = write(tmp_path, "list.jsonl", jsonl({"text": "a", "label": "x"}, ["b", "y"]))
    with pytest.raises(DataError, match=r"list\.jsonl: line 2 holds an array, not an object.*\['text', 'label'\]"):
        read_table(path, TEXT_LABEL)


def test_json_lines_missing_key(tmp_path):
    records = [{"text": "a", "label": "x"}, {"label": "y"}, {"text": "c", "label": "z"}, {"txt": "d", "label": "z"}]
    path = write(tmp_path, "keys.jsonl", jsonl(*records[:2]) + "\n" + jsonl(*records[2:]))
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL)
    message = str(info.value)
    assert "keys.jsonl: key 'text' (argument `text_column`) is missing at" in message
    assert "data row 2 (line 2), data row 4 (line 5) (2 rows in all)" in message

    path = write(tmp_path, "nokey.jsonl", jsonl({"review": "a", "label": "x"}, {"review": "b", "stars": 5}))
    with pytest.raises(DataError) as info:
        read_table(path, {"text_column": "text", "label_column": "label"})
    message = str(info.value)
    assert "nokey.jsonl has no key 'text' (argument `text_column`) in any line" in message
    assert "its keys are ['review', 'label', 'stars']" in message


def test_json_lines_values_must_be_strings(tmp_path):
    path = write(tmp_path, "num.jsonl", jsonl({"text": "a", "label": "x"}, {"text": 42, "label": "y"}))
    with pytest.raises(DataError) as info:
        read_table(path, TEXT_LABEL, integer_columns=("label",))  # integers only where named
    message = str(info.value)
    assert "num.jsonl: line 2: key 'text' (argument `text_column`) holds 42 (a number); expected a string." in message

    cases = [
        (None, "holds null; expected a string or an integer"),
        (True, r"holds true \(a boolean\); expected a string or an integer"),
        (1.5, r"holds 1\.5 \(a number\)"),
        (["a"], r"holds \[\"a\"\] \(an array\)"),
    ]
    for value, expected in cases:
        path = write(tmp_path, "label.jsonl", jsonl({"text": "a", "label": value}))
        with pytest.raises(DataError, match=r"line 1: key 'label' \(argument `label_column`\) " + expected):
            read_table(path, TEXT_LABEL, integer_columns=("label",))


def test_json_lines_empty_values_and_nul_bytes(tmp_path):
    path = write(tmp_path, "empty.jsonl", "\n" + jsonl({"text": "a"}, {"text": " "}, {"text": "b"}))
    expected = r"empty\.jsonl: empty or missing text in column 'text' at data row 2 \(line 3\)"
    with pytest.raises(DataError, match=expected):
        read_table(path, {"text_column": "text"})
    path = write(tmp_path, "nul.jsonl", '{"text": "a"}\n{"text": "b\\u0000c"}\n')
    with pytest.raises(DataError, match=r"nul\.jsonl: NUL byte .* in column 'text' at data row 2 \(line 2\)\."):
        read_table(path, {"text_column": "text"})


def test_json_lines_empty_or_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"JSON Lines file .*gone\.jsonl does not exist"):
        read_table(tmp_path / "gone.jsonl", TEXT_LABEL)
    path = write(tmp_path, "empty.jsonl", "")
    expected = r"JSON Lines file .*empty\.jsonl is empty \(0 bytes\); expected one JSON object a line\."
    with pytest.raises(DataError, match=expected):
        read_table(path, TEXT_LABEL)
    path = write(tmp_path, "blank.jsonl", "\n \n")
    with pytest.raises(DataError, match=r"blank\.jsonl is empty \(only blank lines\)"):
        read_table(path, TEXT_LABEL)
    path = write(tmp_path, "latin1.jsonl", b'{"text": "caf\xe4"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl is not UTF-8 text: undecodable byte 0xe4.*\(line 1\)"):
        read_table(path, TEXT_LABEL)


# --- read_lines and read_parallel ----------------------------------------------------------------------------------


def test_read_lines_of_a_text_file(tmp_path):
    path = write(tmp_path, "corpus.txt", "first line\r\n\n  third, with a comma\nlast\n")
    assert read_lines(path) == ["first line", "", "  third, with a comma", "last"]
    path = write(tmp_path, "no_newline.txt", "\ufeffone\ntwo")
    assert read_lines(path) == ["one", "two"]
    # without a column, a table file is read as plain lines too
    assert read_lines(write(tmp_path, "t.csv", "text,label\na,1\n")) == ["text,label", "a,1"]


def test_read_lines_of_a_column(tmp_path):
    path = write(tmp_path, "c.csv", 'id,text\n1,"one, quoted"\n2,\n3,three\n')
    assert read_lines(path, "text") == ["one, quoted", "", "three"]  # empty values kept, as empty lines are
    path = write(tmp_path, "c.tsv", "text\tid\none, two\t1\n")
    assert read_lines(path, "text") == ["one, two"]
    path = write(tmp_path, "c.jsonl", jsonl({"text": "ein"}, {"text": "zwei", "id": 2}))
    assert read_lines(path, "text") == ["ein", "zwei"]
    path = write(tmp_path, "semi.txt", "text;id\nx;1\n")
    assert read_lines(path, "text", delimiter=";") == ["x"]


def test_read_lines_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.txt does not exist"):
        read_lines(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"blank\.txt holds no text"):
        read_lines(write(tmp_path, "blank.txt", "\n  \n"))
    with pytest.raises(DataError, match=r"latin1\.txt is not UTF-8 text.*\(line 2\)"):
        read_lines(write(tmp_path, "latin1.txt", b"ok\ncaf\xe4\n"))
    with pytest.raises(DataError, match=r"nul\.txt: NUL byte \('\\x00'\) on lines 2, 3\."):
        read_lines(write(tmp_path, "nul.txt", "ok\nb\x00d\n\x00\n"))
    path = write(tmp_path, "c.csv", "id,review\n1,a\n")
    with pytest.raises(DataError, match=r"c\.csv has no column 'text' \(argument `column`\); its columns are"):
        read_lines(path, "text")
    with pytest.raises(DataError, match=r"empty\.csv holds no text"):
        read_lines(write(tmp_path, "empty.csv", 'text\n""\n" "\n'), "text")
    with pytest.raises(DataError, match=r"c\.jsonl: line 2 holds a string"):
        read_lines(write(tmp_path, "c.jsonl", '{"text": "a"}\n"b"\n'), "text")


def test_read_parallel(tmp_path):
    path = write(tmp_path, "pairs.tsv", "de\ten\nHallo Welt\tHello world\n42\t42\n")
    pairs = read_parallel(path, "de", "en")
    assert list(pairs.columns) == ["source", "target"]
    assert pairs["source"].tolist() == ["Hallo Welt", "42"]
    assert pairs["target"].tolist() == ["Hello world", "42"]  # targets are text
    path = write(tmp_path, "pairs.jsonl", jsonl({"de": "Hallo", "en": "Hello"}, {"de": "Ja", "en": ""}))
    with pytest.raises(DataError, match=r"empty or missing target in column 'en' at data row 2 \(line 2\)"):
        read_parallel(path, "de", "en")
    with pytest.raises(DataError, match=r"no key 'fr' \(argument `--target-column`\)"):
        read_parallel(path, "de", "fr", names={"target": "--target-column"})
    with pytest.raises(ValueError, match="argument `names`"):
        read_parallel(path, "de", "en", names={"text": "--text-column"})


def test_a_column_named_twice_is_refused_not_picked(tmp_path):
    path = write(tmp_path, "twice.csv", "text,label,text\ngood,1,bad\n")
    with pytest.raises(
        DataError, match=r"twice\.csv: the header \(line 1\) names the column 'text' more than once \(columns 1, 3\)"
    ):
        read_table(path, TEXT_LABEL)
    path = write(tmp_path, "other.csv", "text,label,note,note\ngood,1,a,b\n")  # a column not asked for may repeat
    assert read_table(path, TEXT_LABEL)["text"].tolist() == ["good"]
