"""The language-modelling corpora of the dataset registry (ptb, wikitext2,
tiny_shakespeare): file layout, splits, look-up order, plain-file downloads,
and the errors when a corpus meets the wrong task."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import dataclasses
import hashlib
import io

import pytest

from nlptool.cli import main
from nlptool.data import datasets

LM_DATASETS = {
    "ptb": ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"],
    "wikitext2": ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"],
    "tiny_shakespeare": ["input.txt"],
}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ptb_copy(root, prefix=""):
    write(root / "ptb" / "ptb.train.txt", f" {prefix}a b <unk> c \n d e\n\n f N\n")
    write(root / "ptb" / "ptb.valid.txt", f" {prefix}valid one\n valid two\n")
    write(root / "ptb" / "ptb.test.txt", f" {prefix}test only")  # no final newline
    return root


def test_registered_language_modelling_corpora():
    for name, files in LM_DATASETS.items():
        dataset = datasets.get(name)
        assert dataset.task == "language-model"
        assert dataset.columns == ("text",)
        assert dataset.splits == ("train", "valid", "test")
        assert sorted(set(dataset.files.values())) == sorted(files)
        sources = dataset.source.values() if isinstance(dataset.source, dict) else [dataset.source]
        for source in sources:
            assert source.url.startswith("https://") and len(source.sha256) == 64
        if isinstance(dataset.source, dict):  # plain files: exactly the files the splits read
            assert sorted(dataset.source) == sorted(files) and dataset.prepare is None


def test_ptb_reads_one_row_per_line_as_it_is(isolated):
    data = ptb_copy(isolated / "data")
    train = datasets.load("ptb", "train", data_dir=data)
    assert list(train.columns) == ["text"]
    # spaces and empty lines are kept; the final newline opens no new line
    assert train["text"].tolist() == [" a b <unk> c ", " d e", "", " f N"]
    assert datasets.load("ptb", "valid", data_dir=data)["text"].tolist() == [" valid one", " valid two"]
    assert datasets.load("ptb", "test", data_dir=data)["text"].tolist() == [" test only"]


def test_wikitext2_reads_its_token_files(isolated):
    data = isolated / "data"
    for split in ("train", "valid", "test"):
        write(data / "wikitext2" / f"wiki.{split}.tokens", f" \n = {split} = \n \n the @-@ word <unk> \n")
    assert datasets.load("wikitext2", "valid", data_dir=data)["text"].tolist() == [
        " ",
        " = valid = ",
        " ",
        " the @-@ word <unk> ",
    ]


@pytest.mark.parametrize("lines", [20, 41, 100, 333])
def test_tiny_shakespeare_splits_partition_the_lines_in_order(isolated, lines):
    text = [f"line {i}" for i in range(lines)]
    data = isolated / "data"
    write(data / "tiny_shakespeare" / "input.txt", "\n".join(text) + "\n")
    splits = {
        s: datasets.load("tiny_shakespeare", s, data_dir=data)["text"].tolist() for s in ("train", "valid", "test")
    }
    assert splits["train"] + splits["valid"] + splits["test"] == text
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [
        round(0.9 * lines),
        round(0.95 * lines) - round(0.9 * lines),
        lines - round(0.95 * lines),
    ]
    for split, share in [("train", 0.9), ("valid", 0.05), ("test", 0.05)]:
        assert abs(len(splits[split]) - share * lines) <= 1, split
    assert datasets.TINY_SHAKESPEARE_SPLIT == {"train": (0.0, 0.9), "valid": (0.9, 0.95), "test": (0.95, 1.0)}


def test_lookup_order_argument_then_environment_then_cache(isolated, monkeypatch):
    cache = ptb_copy(isolated / "cache", "cache ")
    assert datasets.load("ptb", "test")["text"].tolist() == [" cache test only"]
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(ptb_copy(isolated / "env", "env ")))
    assert datasets.load("ptb", "test")["text"].tolist() == [" env test only"]
    explicit = ptb_copy(isolated / "explicit", "arg ")
    assert datasets.load("ptb", "test", data_dir=explicit)["text"].tolist() == [" arg test only"]
    (explicit / "ptb" / "ptb.valid.txt").unlink()  # incomplete: skipped as a whole
    assert datasets.load("ptb", "test", data_dir=explicit)["text"].tolist() == [" env test only"]
    assert cache.exists()


def test_an_empty_split_is_an_error(isolated):
    data = ptb_copy(isolated / "data")
    write(data / "ptb" / "ptb.valid.txt", "")
    with pytest.raises(datasets.DatasetError, match=r"ptb.valid.txt did not give \('text',\) examples"):
        datasets.load("ptb", "valid", data_dir=data)
    write(data / "tiny_shakespeare" / "input.txt", "one\ntwo\nthree\n")  # too short for a test split
    with pytest.raises(datasets.DatasetError, match="did not give"):
        datasets.load("tiny_shakespeare", "test", data_dir=data)


def local_plain_copy(monkeypatch, tmp_path, content, sha256=None):
    """tiny_shakespeare, downloading its input.txt from a file:// URL (size not recorded)."""
    served = write(tmp_path / "served" / "input.txt", content)
    data = served.read_bytes()
    source = datasets.Source(served.as_uri(), None, sha256 or hashlib.sha256(data).hexdigest())
    copy = dataclasses.replace(datasets.get("tiny_shakespeare"), name="shakespeare_test", source={"input.txt": source})
    monkeypatch.setitem(datasets.REGISTRY, copy.name, copy)
    return served


def test_plain_file_sources_download_verify_and_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTOOL_DATA_DIR", raising=False)
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    text = [f"speech {i}" for i in range(40)]
    served = local_plain_copy(monkeypatch, tmp_path, "\n".join(text) + "\n")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert datasets.load("shakespeare_test", "test")["text"].tolist() == text[38:]
    assert "Downloading shakespeare_test/input.txt from file:" in printed.getvalue()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["shakespeare_test"]
    assert (tmp_path / "cache" / "shakespeare_test" / "input.txt").read_bytes() == served.read_bytes()
    served.unlink()  # read from the cache from now on
    assert datasets.load("shakespeare_test", "train")["text"].tolist() == text[:36]


def test_plain_file_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTOOL_DATA_DIR", raising=False)
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    local_plain_copy(monkeypatch, tmp_path, "a\n" * 40, sha256="0" * 64)
    with pytest.raises(datasets.DatasetError, match="expected any number of bytes with SHA-256 0000"):
        datasets.load("shakespeare_test", "train")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_corpus_in_the_wrong_task_is_a_clear_error(isolated):
    from nlptool import tasks
    from nlptool.errors import UsageError
    from nlptool.tasks.base import DataSource

    language_model, classifier = tasks.get("language-model"), tasks.get("sentiment")
    lm_config, sentiment_config = language_model.config_class(), classifier.config_class()
    with pytest.raises(UsageError) as caught:
        language_model.read_data(DataSource(dataset="sst2"), lm_config)
    assert str(caught.value) == (
        "Dataset 'sst2' is not a language-modelling corpus; choose one of ['ptb', 'tiny_shakespeare', 'wikitext2']."
    )
    with pytest.raises(UsageError, match=r"'ptb' is not a sentiment dataset; choose one of \['imdb'"):
        classifier.read_data(DataSource(dataset="ptb"), sentiment_config)
    data = ptb_copy(isolated / "data")
    splits = language_model.read_data(DataSource(dataset="ptb", data_dir=data, max_train_examples=2), lm_config)
    assert splits.train == [" a b <unk> c ", " d e"]  # the first 2 lines
    assert splits.validation == [" valid one", " valid two"] and splits.test == [" test only"]
    assert splits.test_name == "test"
    # evaluation reads any split of the corpus, and only its splits
    assert language_model.read_split(DataSource(dataset="ptb", data_dir=data), lm_config) == ([" test only"], "test")
    assert language_model.read_split(DataSource(dataset="ptb", data_dir=data), lm_config, "valid")[1] == "valid"
    with pytest.raises(UsageError, match=r"has the splits \['train', 'valid', 'test'\], not 'dev'"):
        language_model.read_split(DataSource(dataset="ptb", data_dir=data), lm_config, "dev")


@pytest.mark.parametrize(
    "task,dataset,message",
    [
        ("language-model", "imdb", "'imdb' is not a language-modelling corpus"),
        ("sentiment", "ptb", "'ptb' is not a sentiment dataset"),
        ("language-model", "ptbb", "Unknown dataset 'ptbb'"),
    ],
)
def test_cli_refuses_a_corpus_of_the_other_task(isolated, task, dataset, message):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", task, "--dataset", dataset, "--run-dir", str(isolated / "run")])
    assert code == 2
    assert message in err.getvalue()
    assert not (isolated / "run").exists()
