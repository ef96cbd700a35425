"""Labelled files and the label map: nlptool.data.labels."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json

import numpy as np
import pytest

from nlptool.data import DataError, LabelMap
from nlptool.data.labels import read_labeled


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# --- reading -------------------------------------------------------------------------------------------------------


def test_string_labels(tmp_path):
    path = write(tmp_path, "s.csv", "id,review,sentiment\n1,great film,pos\n2,dull,neg\n3,fine, pos \n")
    frame = read_labeled(path, "review", "sentiment")
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == ["great film", "dull", "fine"]
    # surrounding whitespace of labels is dropped, so " pos " is the class "pos"
    assert frame["label"].tolist() == ["pos", "neg", "pos"]
    assert all(isinstance(v, str) for v in frame["label"])


def test_integer_labels_stay_ints(tmp_path):
    path = write(tmp_path, "i.csv", "text,label\nbad,0\ngood,1\nsuperb,2\n")
    frame = read_labeled(path, "text", "label")
    assert frame["label"].tolist() == [0, 1, 2]
    assert all(isinstance(v, (int, np.integer)) for v in frame["label"])
    # texts that look like numbers or NA markers are still text
    path = write(tmp_path, "j.csv", "text,label\n42,0\nNA,1\n")
    assert read_labeled(path, "text", "label")["text"].tolist() == ["42", "NA"]


def test_labels_not_written_as_integers_stay_strings(tmp_path):
    path = write(tmp_path, "z.csv", "text,label\na,01\nb,1\nc,2\n")
    assert read_labeled(path, "text", "label")["label"].tolist() == ["01", "1", "2"]


def test_tab_delimiter(tmp_path):
    path = write(tmp_path, "t.tsv", "text\tlabel\nhello, world\t1\nbye\t0\n")
    for delimiter in ("\t", None):  # None: the tab of the .tsv extension
        frame = read_labeled(path, "text", "label", delimiter=delimiter)
        assert frame["text"].tolist() == ["hello, world", "bye"]
        assert frame["label"].tolist() == [1, 0]


def test_json_lines_labels(tmp_path):
    path = write(tmp_path, "ints.jsonl", '{"text": "bad", "label": 0}\n{"text": "good", "label": 1}\n')
    frame = read_labeled(path, "text", "label")
    assert frame["label"].tolist() == [0, 1]
    assert all(type(v) is int for v in frame["label"])
    path = write(tmp_path, "strs.jsonl", '{"text": "bad", "label": "neg"}\n{"text": "good", "label": " pos"}\n')
    assert read_labeled(path, "text", "label")["label"].tolist() == ["neg", "pos"]
    # labels mixing integers and strings are strings, as in a CSV file
    path = write(tmp_path, "mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": "x"}\n')
    assert read_labeled(path, "text", "label")["label"].tolist() == ["1", "x"]
    # texts must still be strings
    path = write(tmp_path, "num.jsonl", '{"text": 3, "label": 1}\n{"text": "b", "label": 0}\n')
    with pytest.raises(DataError, match=r"line 1: key 'text' \(argument `text_column`\) holds 3 \(a number\)"):
        read_labeled(path, "text", "label")


# --- errors --------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothere.csv does not exist"):
        read_labeled(tmp_path / "nothere.csv", "text", "label")


def test_missing_column_lists_columns(tmp_path):
    path = write(tmp_path, "cols.csv", "id,review,stars\n1,good,5\n")
    with pytest.raises(DataError) as info:
        read_labeled(path, "review", "sentiment")
    message = str(info.value)
    assert "cols.csv has no column 'sentiment'" in message
    assert "`label_column`" in message
    assert "['id', 'review', 'stars']" in message
    with pytest.raises(DataError, match=r"cols\.csv has no column 'text'.*\['id', 'review', 'stars'\]"):
        read_labeled(path, "text", "stars")


def test_missing_labels(tmp_path):
    # data row 2 has no label field at all, data row 3 an empty one
    path = write(tmp_path, "labels.csv", "text,label\ngood,1\nbad\nso-so,\nok,0\n")
    with pytest.raises(DataError) as info:
        read_labeled(path, "text", "label")
    message = str(info.value)
    assert "labels.csv" in message
    assert "empty or missing label in column 'label'" in message
    assert "data row 2 (line 3), data row 3 (line 4) (2 rows in all)" in message


def test_single_class(tmp_path):
    path = write(tmp_path, "one.csv", "text,label\na,pos\nb,pos\nc,pos\n")
    with pytest.raises(DataError) as info:
        read_labeled(path, "text", "label")
    message = str(info.value)
    assert "one.csv" in message
    assert "column 'label' holds a single class, 'pos', in all 3 rows" in message
    # a test file may legitimately hold one class
    assert read_labeled(path, "text", "label", min_classes=1)["label"].tolist() == ["pos"] * 3


def test_names_say_how_messages_call_the_arguments(tmp_path):
    path = write(tmp_path, "cli.csv", "review,stars\ngood,\n")
    names = {"text": "--text-column", "label": "--label-column"}
    with pytest.raises(DataError, match=r"cli\.csv has no column 'label' \(argument `--label-column`\)"):
        read_labeled(path, "review", "label", names=names)
    with pytest.raises(DataError, match=r"cli\.csv: empty or missing label in column 'stars' at data row 1 \(line 2\)"):
        read_labeled(path, "review", "stars", names=names)
    with pytest.raises(ValueError, match="argument `--label-column`"):
        read_labeled(path, "review", "review", names=names)
    with pytest.raises(ValueError, match="argument `names`"):
        read_labeled(path, "review", "stars", names={"source": "--source-column"})


def test_invalid_arguments(tmp_path):
    path = write(tmp_path, "ok.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(ValueError, match="argument `delimiter`"):
        read_labeled(path, "text", "label", delimiter=";;")
    with pytest.raises(ValueError, match="argument `label_column`"):
        read_labeled(path, "text", "text")


# --- LabelMap ------------------------------------------------------------------------------------------------------


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
