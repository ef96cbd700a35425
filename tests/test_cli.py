"""`nlptool tokenizer train|encode` end to end."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import subprocess
import sys

import pytest

from nlptool.cli import load_tokenizer, main
from nlptool.tokenizers.files import TOKENIZER_FILE

LINES = ["the cat sat on the mat", "the dog sat", "a cat and a dog"]


@pytest.fixture
def corpus(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    csv = tmp_path / "corpus.csv"
    csv.write_text("id,sentence\n" + "".join(f'{i},"{line}"\n' for i, line in enumerate(LINES)), encoding="utf-8")
    return text, csv


def test_train_from_text_and_csv_give_the_same_tokenizer(corpus, tmp_path, capsys):
    text, csv = corpus
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--kind",
                "word",
                "--vocab-size",
                "9",
                "--input",
                str(text),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert "vocabulary size 9" in capsys.readouterr().out
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--kind",
                "word",
                "--vocab-size",
                "9",
                "--input",
                str(csv),
                "--column",
                "sentence",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    first, second = load_tokenizer(tmp_path / "a"), load_tokenizer(tmp_path / "b")
    assert first.vocabulary == second.vocabulary == ["the", "a", "cat", "dog", "sat"]
    assert json.loads((tmp_path / "a" / TOKENIZER_FILE).read_text())["class_name"] == "WordTokenizer"


def test_encode_prints_tokens_and_ids(corpus, tmp_path):
    text, _ = corpus
    out = tmp_path / "tok"
    assert (
        main(["tokenizer", "train", "--kind", "char", "--vocab-size", "40", "--input", str(text), "--out", str(out)])
        == 0
    )
    done = subprocess.run(
        [sys.executable, "-m", "nlptool.cli", "tokenizer", "encode", str(out), "cat"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    tokenizer = load_tokenizer(out)
    ids = [str(i) for i in tokenizer(["cat"]).numpy()[0]]
    assert "tokens: c a t" in done.stdout
    assert f"ids:    {' '.join(ids)}" in done.stdout


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--input", "missing.txt", "--kind", "word", "--vocab-size", "10"], "does not exist"),
        (
            ["--kind", "word", "--vocab-size", "10", "--column", "text"],
            ("corpus.csv has no column 'text'", "its columns are ['id', 'sentence']"),
        ),
        (["--kind", "word"], "--vocab-size is required"),
        (["--kind", "char", "--vocab-size", "3"], "--vocab-size, expected an integer above 4"),
    ],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(corpus, tmp_path, capsys, extra, message):
    _, csv = corpus
    args = ["tokenizer", "train", "--out", str(tmp_path / "out")] + (
        extra if "--input" in extra else ["--input", str(csv)] + extra
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    for part in (message,) if isinstance(message, str) else message:
        assert part in err
    assert err.startswith("nlptool: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["sentencepiece", "wordpiece"])
def test_subword_tokenizers_train_and_load_in_a_fresh_process(corpus, tmp_path, kind):
    text, _ = corpus
    out = tmp_path / kind
    assert (
        main(["tokenizer", "train", "--kind", kind, "--vocab-size", "40", "--input", str(text), "--out", str(out)]) == 0
    )
    done = subprocess.run(
        [sys.executable, "-m", "nlptool.cli", "tokenizer", "encode", str(out), "the cat sat"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [str(i) for i in load_tokenizer(out)(["the cat sat"]).numpy()[0] if i != 0]
    assert f"ids:    {' '.join(ids)}" in done.stdout
