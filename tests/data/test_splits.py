"""Held-out splits and labelled data sets: nlptool.data.splits."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pandas as pd
import pytest

from nlptool.data import DataError, load_labeled_data
from nlptool.data.labels import read_labeled
from nlptool.data.splits import random_split, stratified_split


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8"))
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


# --- stratified_split ----------------------------------------------------------------------------------------------


def test_stratified_split_keeps_proportions_and_is_seeded(tmp_path):
    frame = read_labeled(balanced_csv(tmp_path), "review", "sentiment")
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


# --- random_split --------------------------------------------------------------------------------------------------


def test_random_split_exact_rows_in_file_order():
    frame = pd.DataFrame({"source": [f"s{i}" for i in range(10)], "target": [f"t{i}" for i in range(10)]})
    train, validation = random_split(frame, 0.3, seed=0)
    # round(10 * 0.3) = 3 rows held out: the first 3 of default_rng(0).permutation(10), sorted
    assert validation["source"].tolist() == ["s2", "s4", "s6"]
    assert train["source"].tolist() == ["s0", "s1", "s3", "s5", "s7", "s8", "s9"]
    assert validation["target"].tolist() == ["t2", "t4", "t6"]  # rows stay whole
    assert validation.index.tolist() == [0, 1, 2] and train.index.tolist() == list(range(7))

    small = frame.iloc[:7]
    train, validation = random_split(small, 0.2, seed=42)
    assert validation["source"].tolist() == ["s3"]
    assert train["source"].tolist() == ["s0", "s1", "s2", "s4", "s5", "s6"]
    # at least one row is held out, however small the fraction
    assert len(random_split(small, 0.01, seed=0)[1]) == 1


def test_random_split_matches_its_formula():
    frame = pd.DataFrame({"text": [f"line {i}" for i in range(101)]})
    for seed, fraction in ((1234, 0.05), (3, 0.5), (7, 0.9)):
        train, validation = random_split(frame, fraction, seed)
        held_out = max(1, round(len(frame) * fraction))
        order = np.random.default_rng(seed).permutation(len(frame))
        assert validation.equals(frame.iloc[np.sort(order[:held_out])].reset_index(drop=True))
        assert train.equals(frame.iloc[np.sort(order[held_out:])].reset_index(drop=True))


def test_random_split_too_few_rows():
    with pytest.raises(DataError, match=r"Cannot hold out rows of pairs\.csv for validation: it has 1 row,"):
        random_split(pd.DataFrame({"source": ["a"]}), 0.1, seed=0, source="pairs.csv")
    with pytest.raises(DataError, match=r"of the data for validation: it has 0 rows"):
        random_split(pd.DataFrame({"source": []}), 0.1, seed=0)
    with pytest.raises(DataError, match=r"holding out 0\.9 of 2 rows leaves no training row"):
        random_split(pd.DataFrame({"source": ["a", "b"]}), 0.9, seed=0)
    with pytest.raises(ValueError, match="argument `fraction`"):
        random_split(pd.DataFrame({"source": ["a", "b"]}), 0, seed=0)


# --- load_labeled_data ---------------------------------------------------------------------------------------------


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
    data = load_labeled_data(train, "text", "label", validation_path=validation, test_path=test)
    assert data.train["text"].tolist() == ["a", "b", "c", "d"]  # nothing held out of the training file
    assert data.validation["label"].tolist() == [1, 1]
    assert data.test["text"].tolist() == ["g", "h"]
    assert data.label_map.encode(data.test["label"]).tolist() == [2, 0]


def test_load_files_of_different_formats(tmp_path):
    train = write(tmp_path, "train.tsv", "text\tlabel\na, b\tpos\nc\tneg\n")
    validation = write(tmp_path, "valid.jsonl", '{"text": "d", "label": "neg"}\n')
    test = write(tmp_path, "test.csv", "text,label\ne,pos\n")
    data = load_labeled_data(train, "text", "label", validation_path=validation, test_path=test)
    assert data.train["text"].tolist() == ["a, b", "c"]
    assert data.validation["label"].tolist() == ["neg"]
    assert data.test["label"].tolist() == ["pos"]


def test_string_labels_in_validation_file_match_training_strings(tmp_path):
    # training labels are strings ("x" is one), so the validation "1" means the string "1"
    train = write(tmp_path, "train.csv", "text,label\na,1\nb,x\n")
    validation = write(tmp_path, "valid.csv", "text,label\nc,1\n")
    data = load_labeled_data(train, "text", "label", validation_path=validation)
    assert data.validation["label"].tolist() == ["1"]
    assert data.label_map.encode(data.validation["label"]).tolist() == [0]
    # the same for an integer label in a JSON Lines file
    validation = write(tmp_path, "valid.jsonl", '{"text": "c", "label": 1}\n')
    assert load_labeled_data(train, "text", "label", validation_path=validation).validation["label"].tolist() == ["1"]


def test_unknown_label_in_validation_file(tmp_path):
    train = write(tmp_path, "train.csv", "text,label\na,pos\nb,neg\n")
    validation = write(tmp_path, "valid.csv", 'text,label\n"multi\nline",pos\nc,meh\nd,neg\n')
    with pytest.raises(DataError) as info:
        load_labeled_data(train, "text", "label", validation_path=validation)
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
        load_labeled_data(train, "text", "label", validation_path=validation, test_path=test)
    # in a JSON Lines file, the line of the row counts the blank lines too
    test = write(tmp_path, "test.jsonl", '{"text": "d", "label": 1}\n\n{"text": "e", "label": 5}\n')
    with pytest.raises(DataError, match=r"test\.jsonl: column 'label' .* data row 2 \(line 3\): 5"):
        load_labeled_data(train, "text", "label", validation_path=validation, test_path=test)


def test_errors_in_other_files_name_that_file(tmp_path):
    train = balanced_csv(tmp_path)
    validation = write(tmp_path, "valid.csv", "review,sentiment\n,pos\n")
    expected = r"valid\.csv: empty or missing text in column 'review' at data row 1 \(line 2\)"
    with pytest.raises(DataError, match=expected):
        load_labeled_data(train, "review", "sentiment", validation_path=validation)
    with pytest.raises(DataError, match=r"absent\.csv does not exist"):
        load_labeled_data(train, "review", "sentiment", test_path=tmp_path / "absent.csv")
    names = {"text": "--text-column", "label": "--label-column"}
    with pytest.raises(DataError, match=r"valid\.csv: empty or missing text in column 'review'"):
        load_labeled_data(train, "review", "sentiment", validation_path=validation, names=names)
    with pytest.raises(DataError, match=r"train\.csv has no column 'stars' \(argument `--label-column`\)"):
        load_labeled_data(train, "review", "stars", validation_path=validation, names=names)
