"""Reading users' labelled CSV files: nlptool.data.csv."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json

import numpy as np
import pandas as pd
import pytest

from nlptool.data.csv import (
    DataError,
    LabelMap,
    load_labeled_data,
    read_labeled_csv,
    stratified_split,
)


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def balanced_csv(tmp_path, name="train.csv", counts=None, seed=0):
    """A CSV with columns id,review,sentiment; `counts` maps label -> rows."""
    counts = counts or {"neg": 30, "pos": 60, "neutral": 10}
    rows = [(f"{label} review {i}", label) for label, n in counts.items() for i in range(n)]
    order = np.random.default_rng(seed).permutation(len(rows))
    frame = pd.DataFrame(
        {"id": range(len(rows)), "review": [rows[i][0] for i in order], "sentiment": [rows[i][1] for i in order]}
    )
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


# --- reading -----------------------------------------------------------------------------------------------------


def test_string_labels(tmp_path):
    path = write(tmp_path, "s.csv", "id,review,sentiment\n1,great film,pos\n2,dull,neg\n3,fine, pos \n")
    frame = read_labeled_csv(path, "review", "sentiment")
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == ["great film", "dull", "fine"]
    # surrounding whitespace of labels is dropped, so " pos " is the class "pos"
    assert frame["label"].tolist() == ["pos", "neg", "pos"]
    assert all(isinstance(v, str) for v in frame["label"])


def test_integer_labels_stay_ints(tmp_path):
    path = write(tmp_path, "i.csv", "text,label\nbad,0\ngood,1\nsuperb,2\n")
    frame = read_labeled_csv(path, "text", "label")
    assert frame["label"].tolist() == [0, 1, 2]
    assert all(isinstance(v, (int, np.integer)) for v in frame["label"])
    # texts that look like numbers or NA markers are still text
    path = write(tmp_path, "j.csv", "text,label\n42,0\nNA,1\n")
    assert read_labeled_csv(path, "text", "label")["text"].tolist() == ["42", "NA"]


def test_labels_not_written_as_integers_stay_strings(tmp_path):
    path = write(tmp_path, "z.csv", "text,label\na,01\nb,1\nc,2\n")
    assert read_labeled_csv(path, "text", "label")["label"].tolist() == ["01", "1", "2"]


def test_quoted_multiline_fields_and_utf8(tmp_path):
    content = (
        "text,label\n"
        '"Ein schöner Film, wirklich.\nZweite Zeile",pos\n'
        '"这部电影很好看 😀",pos\n'
        '"He said ""meh"", then left",neg\n'
    )
    path = write(tmp_path, "u.csv", "\ufeff" + content)  # with a byte-order mark, as Excel writes
    frame = read_labeled_csv(path, "text", "label")
    assert frame["text"].tolist() == [
        "Ein schöner Film, wirklich.\nZweite Zeile",
        "这部电影很好看 😀",
        'He said "meh", then left',
    ]
    assert frame["label"].tolist() == ["pos", "pos", "neg"]


def test_tab_delimiter(tmp_path):
    path = write(tmp_path, "t.tsv", "text\tlabel\nhello, world\t1\nbye\t0\n")
    frame = read_labeled_csv(path, "text", "label", delimiter="\t")
    assert frame["text"].tolist() == ["hello, world", "bye"]
    assert frame["label"].tolist() == [1, 0]


# --- errors: one test per case -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothere.csv does not exist"):
        read_labeled_csv(tmp_path / "nothere.csv", "text", "label")


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv is empty \(0 bytes\)"):
        read_labeled_csv(path, "text", "label")
    path = write(tmp_path, "blank.csv", "\n\n")
    with pytest.raises(DataError, match=r"blank\.csv is empty"):
        read_labeled_csv(path, "text", "label")


def test_header_only(tmp_path):
    path = write(tmp_path, "header.csv", "text,label\n")
    with pytest.raises(DataError, match=r"header\.csv has a header but no data rows"):
        read_labeled_csv(path, "text", "label")


def test_undecodable_bytes(tmp_path):
    # Latin-1 "ä" (0xe4) on line 4, after a multi-line quoted field on lines 2-3
    raw = b'text,label\n"first\nline",1\ncaf\xe4,0\n'
    path = write(tmp_path, "latin1.csv", raw)
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "latin1.csv is not UTF-8" in message
    assert "0xe4" in message
    offset = raw.index(b"\xe4")
    assert f"byte offset {offset}" in message
    assert "(line 4)" in message


def test_wrong_delimiter(tmp_path):
    path = write(tmp_path, "semi.csv", "text;label\ngood, really;1\nbad;0\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "semi.csv looks delimited by ';'" in message
    assert "delimiter=';'" in message
    assert "'text;label'" in message

    path = write(tmp_path, "tabs.csv", "text\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match=r"tabs\.csv looks delimited by a tab.*delimiter='\\t'"):
        read_labeled_csv(path, "text", "label")


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "cols.csv", "id,review,stars\n1,good,5\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "review", "sentiment")
    message = str(info.value)
    assert "cols.csv has no column 'sentiment'" in message
    assert "`label_column`" in message
    assert "['id', 'review', 'stars']" in message
    with pytest.raises(DataError, match=r"cols\.csv has no column 'text'.*\['id', 'review', 'stars'\]"):
        read_labeled_csv(path, "text", "stars")


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
        read_labeled_csv(path, "review", "label")
    message = str(info.value)
    assert "texts.csv" in message
    assert "empty or missing text in column 'review'" in message
    assert "data row 2 (line 4), data row 3 (line 5), data row 5 (line 8) (3 rows in all)" in message


def test_many_empty_texts_are_counted(tmp_path):
    path = write(tmp_path, "many.csv", "text,label\n" + ",1\n" * 8 + "ok,0\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "data row 5 (line 6), ... (8 rows in all)" in message
    assert "data row 6" not in message


def test_rows_without_line_numbers_when_lines_cannot_be_counted(tmp_path):
    # a field above csv.field_size_limit() stops the line count: rows are then named without a line
    path = write(tmp_path, "long.csv", "text,label\n" + "x" * 200_000 + ",1\n,0\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "long.csv: empty or missing text in column 'text' at data row 2." in message
    assert "line" not in message.split("at data row")[1]


def test_unclosed_quote(tmp_path):
    path = write(tmp_path, "quote.csv", 'text,label\na,1\n"never closed,0\nb,1\n')
    with pytest.raises(DataError, match=r"Cannot parse .*quote\.csv.*An opening quote is never closed"):
        read_labeled_csv(path, "text", "label")


def test_missing_labels(tmp_path):
    # data row 2 has no label field at all, data row 3 an empty one
    path = write(tmp_path, "labels.csv", "text,label\ngood,1\nbad\nso-so,\nok,0\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "labels.csv" in message
    assert "empty or missing label in column 'label'" in message
    assert "data row 2 (line 3), data row 3 (line 4) (2 rows in all)" in message


def test_single_class(tmp_path):
    path = write(tmp_path, "one.csv", "text,label\na,pos\nb,pos\nc,pos\n")
    with pytest.raises(DataError) as info:
        read_labeled_csv(path, "text", "label")
    message = str(info.value)
    assert "one.csv" in message
    assert "column 'label' holds a single class, 'pos', in all 3 rows" in message
    # a test file may legitimately hold one class
    assert read_labeled_csv(path, "text", "label", min_classes=1)["label"].tolist() == ["pos"] * 3


def test_more_fields_than_header(tmp_path):
    path = write(tmp_path, "extra.csv", "text,label\nhello, world,1\nbye, now,0\n")
    with pytest.raises(DataError, match=r"extra\.csv: data rows have more fields than the header"):
        read_labeled_csv(path, "text", "label")


def test_invalid_arguments(tmp_path):
    path = write(tmp_path, "ok.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(ValueError, match="argument `delimiter`"):
        read_labeled_csv(path, "text", "label", delimiter=";;")
    with pytest.raises(ValueError, match="argument `label_column`"):
        read_labeled_csv(path, "text", "text")


# --- LabelMap ----------------------------------------------------------------------------------------------------


def test_label_map_order_and_round_trip():
    strings = LabelMap.from_labels(["pos", "neg", "neutral", "neg"])
    assert strings.labels == ("neg", "neutral", "pos")
    ids = strings.encode(["pos", "neg", "pos", "neutral"])
    assert ids.dtype == np.int32
    assert ids.tolist() == [2, 0, 2, 1]
    assert strings.decode(ids) == ["pos", "neg", "pos", "neutral"]

    # ints sort numerically (10 after 2), not as strings
    ints = LabelMap.from_labels(np.array([10, 2, -1, 2]))
    assert ints.labels == (-1, 2, 10)
    assert ints.names == ["-1", "2", "10"]
    assert ints.encode([10, -1]).tolist() == [2, 0]
    assert ints.decode(np.array([0, 2])) == [-1, 10]
    assert all(type(v) is int for v in ints.decode([0, 1, 2]))


def test_label_map_errors():
    with pytest.raises(DataError, match="mix integers and strings"):
        LabelMap.from_labels([1, "pos"])
    label_map = LabelMap.from_labels(["neg", "pos"])
    with pytest.raises(DataError, match=r"Unknown label 'meh'.*\['neg', 'pos'\]"):
        label_map.encode(["pos", "meh"])
    # a string label map does not take the int 1, nor an int map the string "1"
    with pytest.raises(DataError, match="Unknown label 1"):
        label_map.encode([1])
    with pytest.raises(DataError, match="Unknown label '1'"):
        LabelMap.from_labels([0, 1]).encode(["1"])
    with pytest.raises(ValueError, match=r"argument `ids`.*\[0, 2\).*got 2"):
        label_map.decode([2])


def test_label_map_config_round_trip():
    for labels in (["b", "a", "10", "2"], [3, 1, 2]):
        label_map = LabelMap.from_labels(labels)
        config = json.loads(json.dumps(label_map.to_config()))
        restored = LabelMap.from_config(config)
        assert restored == label_map
        assert [type(v) for v in restored.labels] == [type(v) for v in label_map.labels]
    # string labels that look like numbers stay strings
    assert LabelMap.from_config(LabelMap.from_labels(["1", "2"]).to_config()).labels == ("1", "2")
    assert LabelMap.from_labels(["1", "2"]).to_config() == {"labels": ["1", "2"], "kind": "str"}
    assert LabelMap.from_labels([2, 1]).to_config() == {"labels": [1, 2], "kind": "int"}


# --- splitting ---------------------------------------------------------------------------------------------------


def test_stratified_split_keeps_proportions_and_is_seeded(tmp_path):
    frame = read_labeled_csv(balanced_csv(tmp_path), "review", "sentiment")
    train, held_out = stratified_split(frame, 0.2, seed=7)
    assert len(held_out) == 20 and len(train) == 80
    assert held_out["label"].value_counts().to_dict() == {"pos": 12, "neg": 6, "neutral": 2}
    assert train["label"].value_counts().to_dict() == {"pos": 48, "neg": 24, "neutral": 8}
    # a partition of the rows, each keeping its index (data row - 1)
    assert sorted(train.index.tolist() + held_out.index.tolist()) == list(range(100))
    assert (frame.loc[held_out.index, "text"] == held_out["text"]).all()

    again_train, again_held_out = stratified_split(frame, 0.2, seed=7)
    assert again_held_out.index.tolist() == held_out.index.tolist()
    assert again_train.index.tolist() == train.index.tolist()
    _, other = stratified_split(frame, 0.2, seed=8)
    assert set(other.index) != set(held_out.index)


def test_stratified_split_too_few_examples(tmp_path):
    frame = pd.DataFrame({"text": list("abcdef"), "label": ["x", "x", "x", "y", "y", "z"]})
    with pytest.raises(DataError, match=r"data\.csv: class 'z' has only 1 row"):
        stratified_split(frame, 0.5, seed=0, source="data.csv")
    frame = pd.DataFrame({"text": list("abcdefgh"), "label": ["x"] * 4 + ["y"] * 4})
    with pytest.raises(DataError, match=r"gives 1 held-out and 7 training rows.*2 classes"):
        stratified_split(frame, 0.1, seed=0)
    with pytest.raises(ValueError, match="argument `fraction`"):
        stratified_split(frame, 1.5, seed=0)


# --- load_labeled_data -------------------------------------------------------------------------------------------


def test_load_with_split(tmp_path):
    data = load_labeled_data(balanced_csv(tmp_path), "review", "sentiment", validation_fraction=0.1, seed=3)
    assert data.label_map.labels == ("neg", "neutral", "pos")
    assert len(data.train) == 90 and len(data.validation) == 10
    assert data.validation["label"].value_counts().to_dict() == {"pos": 6, "neg": 3, "neutral": 1}
    assert data.test is None
    assert data.label_map.encode(data.train["label"]).max() == 2


def test_load_with_separate_validation_and_test(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\na,0\nb,1\nc,2\nd,1\n")
    validation = write(tmp_path, "valid.csv", "text,label\ne,1\nf,1\n")  # one class is fine here
    test = write(tmp_path, "test.csv", "text,label\ng,2\nh,0\n")
    data = load_labeled_data(train, "text", "label", validation_csv=validation, test_csv=test)
    assert data.train["text"].tolist() == ["a", "b", "c", "d"]  # nothing held out of the training file
    assert data.validation["label"].tolist() == [1, 1]
    assert data.test["text"].tolist() == ["g", "h"]
    assert data.label_map.encode(data.test["label"]).tolist() == [2, 0]


def test_string_labels_in_validation_file_match_training_strings(tmp_path):
    # training labels are strings ("x" is one), so the validation "1" means the string "1"
    train = write(tmp_path, "train.csv", "text,label\na,1\nb,x\n")
    validation = write(tmp_path, "valid.csv", "text,label\nc,1\n")
    data = load_labeled_data(train, "text", "label", validation_csv=validation)
    assert data.validation["label"].tolist() == ["1"]
    assert data.label_map.encode(data.validation["label"]).tolist() == [0]


def test_unknown_label_in_validation_file(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\na,pos\nb,neg\n")
    validation = write(tmp_path, "valid.csv", 'text,label\n"multi\nline",pos\nc,meh\nd,neg\n')
    with pytest.raises(DataError) as info:
        load_labeled_data(train, "text", "label", validation_csv=validation)
    message = str(info.value)
    assert "valid.csv" in message
    assert "column 'label' has labels absent from the training data" in message
    assert "data row 2 (line 4): 'meh'" in message
    assert "['neg', 'pos']" in message


def test_unknown_label_in_test_file(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\na,0\nb,1\n")
    validation = write(tmp_path, "valid.csv", "text,label\nc,0\n")
    test = write(tmp_path, "test.csv", "text,label\nd,1\ne,5\n")
    with pytest.raises(DataError, match=r"test\.csv: column 'label' .* data row 2 \(line 3\): 5"):
        load_labeled_data(train, "text", "label", validation_csv=validation, test_csv=test)


def test_errors_in_other_files_name_that_file(tmp_path):
    train = balanced_csv(tmp_path)
    validation = write(tmp_path, "valid.csv", "review,sentiment\n,pos\n")
    expected = r"valid\.csv: empty or missing text in column 'review' at data row 1 \(line 2\)"
    with pytest.raises(DataError, match=expected):
        load_labeled_data(train, "review", "sentiment", validation_csv=validation)
    with pytest.raises(DataError, match=r"absent\.csv does not exist"):
        load_labeled_data(train, "review", "sentiment", test_csv=tmp_path / "absent.csv")
