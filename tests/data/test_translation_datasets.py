"""The translation datasets of the registry (multi30k, spa_eng): aligned
reading, the folder test for a multi-file corpus, spa_eng's grouped split,
and downloads whose own checksum is unknown but whose prepared files are
verified."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import dataclasses
import gzip
import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nlptool.data import datasets

MIRROR = Path(__file__).resolve().parents[3] / "shared" / "data"
MULTI30K_FILES = [f"{s}.{lang}" for s in ("train", "val", "test_2016_flickr") for lang in ("en", "de", "fr")]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# line i of each language translates line i of the others; "NA" and "" must stay strings
MULTI30K = {
    "train": {
        "en": "A dog runs.\nNA\n\nTwo men, one boat.\n",
        "de": "Ein Hund rennt.\nNA\n\nZwei Männer, ein Boot.\n",
        "fr": "Un chien court.\nNA\n\nDeux hommes, un bateau.",  # no final newline: still 4 lines
    },
    "val": {"en": "A cat.\n", "de": "Eine Katze.\n", "fr": "Un chat.\n"},
    "test_2016_flickr": {"en": "A bird.\nA tree.\n", "de": "Ein Vogel.\nEin Baum.\n", "fr": "Un oiseau.\nUn arbre.\n"},
}


def multi30k_copy(root, texts=MULTI30K):
    for split, languages in texts.items():
        for language, text in languages.items():
            write(root / "multi30k" / f"{split}.{language}", text)
    return root


def test_registered_translation_datasets():
    multi30k, spa_eng = datasets.get("multi30k"), datasets.get("spa_eng")
    assert (multi30k.task, spa_eng.task) == ("translation", "translation")
    assert multi30k.columns == ("en", "de", "fr") and spa_eng.columns == ("en", "es")
    assert multi30k.splits == ("train", "val", "test_2016_flickr")
    assert spa_eng.splits == ("train", "valid", "test")
    assert sorted(multi30k.required_files) == sorted(MULTI30K_FILES)
    assert spa_eng.required_files == ("spa.txt",)
    # the downloads' own checksums are unknown, so every prepared file has one
    assert sorted(multi30k.source) == sorted(f"{f}.gz" for f in MULTI30K_FILES)
    for dataset in (multi30k, spa_eng):
        assert all(source.url.startswith("https://") and source.sha256 is None for source in dataset.sources)
        assert set(dataset.file_sha256) == set(dataset.required_files)
        assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in dataset.file_sha256.values())
    assert multi30k.source["test_2016_flickr.de.gz"].url == (
        "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/test_2016_flickr.de.gz"
    )


def test_register_refuses_an_unchecked_download():
    unchecked = dataclasses.replace(datasets.get("spa_eng"), name="unchecked_test", file_sha256={})
    with pytest.raises(ValueError, match="have no SHA-256, so file_sha256 must cover every file"):
        datasets.register(unchecked)
    stray = dataclasses.replace(datasets.get("tiny_shakespeare"), name="stray_test", file_sha256={"x.txt": "0" * 64})
    with pytest.raises(ValueError, match="file_sha256 names files the dataset does not have"):
        datasets.register(stray)
    assert "unchecked_test" not in datasets.REGISTRY and "stray_test" not in datasets.REGISTRY


def test_multi30k_reads_the_languages_aligned(isolated):
    data = multi30k_copy(isolated / "data")
    train = datasets.load("multi30k", "train", data_dir=data)
    assert list(train.columns) == ["en", "de", "fr"]
    assert train.to_dict("records") == [
        {"en": "A dog runs.", "de": "Ein Hund rennt.", "fr": "Un chien court."},
        {"en": "NA", "de": "NA", "fr": "NA"},
        {"en": "", "de": "", "fr": ""},
        {"en": "Two men, one boat.", "de": "Zwei Männer, ein Boot.", "fr": "Deux hommes, un bateau."},
    ]
    assert not train.isna().any().any()
    assert datasets.load("multi30k", "val", data_dir=data).values.tolist() == [["A cat.", "Eine Katze.", "Un chat."]]
    assert datasets.load("multi30k", "test_2016_flickr", data_dir=data)["de"].tolist() == ["Ein Vogel.", "Ein Baum."]


def test_multi30k_misaligned_files_are_an_error_naming_them(isolated):
    texts = {**MULTI30K, "val": {"en": "A cat.\nA dog.\n", "de": "Eine Katze.\n", "fr": "Un chat.\nUn chien.\n"}}
    data = multi30k_copy(isolated / "data", texts)
    with pytest.raises(datasets.DatasetError) as caught:
        datasets.load("multi30k", "val", data_dir=data)
    message = str(caught.value)
    assert "not aligned" in message
    for name, count in [("val.en", 2), ("val.de", 1), ("val.fr", 2)]:
        assert f"{data / 'multi30k' / name} has {count}" in message
    assert len(datasets.load("multi30k", "train", data_dir=data)) == 4  # the other splits still read


def test_a_folder_missing_one_language_is_not_multi30k(isolated, monkeypatch):
    data = multi30k_copy(isolated / "data")
    (data / "multi30k" / "test_2016_flickr.fr").unlink()  # train, the split asked for, is complete
    with pytest.raises(datasets.DatasetError, match=r"'multi30k' was not found in .* downloading is off"):
        datasets.load("multi30k", "train", data_dir=data, download=False)
    # the incomplete folder is skipped as a whole, and a complete one later in the search order wins
    env = multi30k_copy(isolated / "env", {**MULTI30K, "val": {"en": "env\n", "de": "env\n", "fr": "env\n"}})
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(env))
    assert datasets.locate("multi30k", data_dir=data, download=False) == env / "multi30k"
    assert datasets.load("multi30k", "val", data_dir=data)["fr"].tolist() == ["env"]


def spa_eng_fixture(groups=400, seed=0):
    """`groups` English sentences with 1 to 4 Spanish translations each, the
    translations of one sentence not always next to each other."""
    rng = np.random.default_rng(seed)
    rows = [(f"Sentence {g}.", f"Frase {g}, versión {t}.") for g in range(groups) for t in range(rng.integers(1, 5))]
    order = np.argsort(np.arange(len(rows)) + rng.integers(0, 6, len(rows)), kind="stable")  # local shuffles
    return [rows[i] for i in order]


def test_spa_eng_split_groups_by_english_sentence(isolated):
    rows = spa_eng_fixture()
    data = isolated / "data"
    write(data / "spa_eng" / "spa.txt", "".join(f"{en}\t{es}\n" for en, es in rows))
    splits = {s: datasets.load("spa_eng", s, data_dir=data) for s in ("train", "valid", "test")}
    assert all(list(frame.columns) == ["en", "es"] for frame in splits.values())
    # deterministic: a second read gives the same rows
    again = {s: datasets.load("spa_eng", s, data_dir=data) for s in splits}
    assert all(again[s].equals(splits[s]) for s in splits)
    # every line exactly once, and in the file's order within a split
    pairs = {s: list(zip(frame["en"], frame["es"], strict=True)) for s, frame in splits.items()}
    assert sorted(pairs["train"] + pairs["valid"] + pairs["test"]) == sorted(rows)
    position = {row: i for i, row in enumerate(rows)}
    assert all([position[p] for p in pairs[s]] == sorted(position[p] for p in pairs[s]) for s in pairs)
    # no English sentence in two splits; 5 % of the 400 sentences each in test and valid
    english = {s: set(frame["en"]) for s, frame in splits.items()}
    assert not english["train"] & english["valid"] and not english["train"] & english["test"]
    assert not english["valid"] & english["test"]
    assert [len(english[s]) for s in ("train", "valid", "test")] == [360, 20, 20]
    # the documented rule: groups by first appearance, default_rng(1234).permutation, test first
    first_seen = list(dict.fromkeys(en for en, _ in rows))
    order = np.random.default_rng(1234).permutation(len(first_seen))
    assert english["test"] == {first_seen[i] for i in order[:20]}
    assert english["valid"] == {first_seen[i] for i in order[20:40]}
    assert datasets.SPA_ENG_SPLIT == {"train": 0.90, "valid": 0.05, "test": 0.05} and datasets.SPA_ENG_SEED == 1234


def test_spa_eng_splits_at_the_first_tab_and_names_a_line_without_one(isolated):
    data = isolated / "data"
    write(data / "spa_eng" / "spa.txt", "Go.\tVe.\nNA\t\tnull\n")  # 2 sentences: too few for test and valid
    assert datasets.load("spa_eng", "train", data_dir=data).values.tolist() == [["Go.", "Ve."], ["NA", "\tnull"]]
    write(data / "spa_eng" / "spa.txt", "Go.\tVe.\nHi.\tHola.\nRun! ¡Corre!\nWait.\tEspera.\n")
    with pytest.raises(datasets.DatasetError, match=r"spa\.txt, line 3: no tab between the two sentences: 'Run!"):
        datasets.load("spa_eng", "train", data_dir=data)
    write(data / "spa_eng" / "spa.txt", "Go.\tVe.\n\nHi.\tHola.\n")  # an empty line is malformed too
    with pytest.raises(datasets.DatasetError, match="line 2: no tab"):
        datasets.load("spa_eng", "test", data_dir=data)


# --- downloads: served by a patched urlopen, never the network ---


def serve(monkeypatch, files):
    """Make urllib.request.urlopen answer each URL in `files` with its bytes."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        if url not in files:
            raise urllib.error.URLError(f"no such test file {url}")
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def multi30k_gz(texts):
    raw = datasets.get("multi30k").source
    return {
        raw[f"{split}.{lang}.gz"].url: gzip.compress(text.encode("utf-8"))
        for split, languages in texts.items()
        for lang, text in languages.items()
    }


def multi30k_test_copy(monkeypatch, texts=MULTI30K):
    """The registered multi30k, with the checksums of the tiny `texts`."""
    digests = {
        f"{split}.{lang}": hashlib.sha256(text.encode("utf-8")).hexdigest()
        for split, languages in texts.items()
        for lang, text in languages.items()
    }
    copy = dataclasses.replace(datasets.get("multi30k"), name="multi30k_test", file_sha256=digests)
    monkeypatch.setitem(datasets.REGISTRY, copy.name, copy)
    return copy


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPTOOL_DATA_DIR", raising=False)
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_multi30k_download_gunzips_and_verifies_each_file(empty_cache, monkeypatch):
    multi30k_test_copy(monkeypatch)
    requested = serve(monkeypatch, multi30k_gz(MULTI30K))
    with contextlib.redirect_stdout(io.StringIO()):
        train = datasets.load("multi30k_test", "train")
    assert train["de"].tolist() == ["Ein Hund rennt.", "NA", "", "Zwei Männer, ein Boot."]
    assert len(requested) == 9
    assert sorted(p.name for p in empty_cache.iterdir()) == ["multi30k_test"]  # no work folder, no .gz
    assert sorted(p.name for p in (empty_cache / "multi30k_test").iterdir()) == sorted(MULTI30K_FILES)
    assert (empty_cache / "multi30k_test" / "val.fr").read_text(encoding="utf-8") == "Un chat.\n"
    assert datasets.load("multi30k_test", "val")["en"].tolist() == ["A cat."]  # from the cache now
    assert len(requested) == 9


def test_a_prepared_file_with_the_wrong_checksum_leaves_nothing(empty_cache, monkeypatch):
    copy = multi30k_test_copy(monkeypatch)
    changed = {**MULTI30K, "val": {**MULTI30K["val"], "de": "Ein Hund.\n"}}  # upstream changed one file
    serve(monkeypatch, multi30k_gz(changed))
    with pytest.raises(datasets.DatasetError) as caught, contextlib.redirect_stdout(io.StringIO()):
        datasets.load("multi30k_test", "val")
    got = hashlib.sha256(b"Ein Hund.\n").hexdigest()
    assert str(caught.value).startswith(
        f"The prepared file multi30k_test/val.de does not match its record: got SHA-256 {got}, "
        f"expected {copy.file_sha256['val.de']}."
    )
    assert list(empty_cache.iterdir()) == []


def test_a_download_that_is_not_gzip_leaves_nothing(empty_cache, monkeypatch):
    multi30k_test_copy(monkeypatch)
    files = multi30k_gz(MULTI30K)
    files[datasets.get("multi30k").source["train.fr.gz"].url] = b"<html>rate limited</html>"
    serve(monkeypatch, files)
    with (
        pytest.raises(datasets.DatasetError, match="Cannot decompress train.fr.gz"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        datasets.load("multi30k_test", "train")
    assert list(empty_cache.iterdir()) == []


def test_download_without_a_recorded_checksum_checks_the_size(tmp_path, monkeypatch):
    serve(monkeypatch, {"https://example.org/a": b"abcd"})
    datasets.download(datasets.Source("https://example.org/a", None, None), tmp_path / "a")
    datasets.download(datasets.Source("https://example.org/a", 4, None), tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"abcd"
    with pytest.raises(datasets.DatasetError, match=r"got 4 bytes .* expected 3 bytes with SHA-256 \(not recorded\)"):
        datasets.download(datasets.Source("https://example.org/a", 3, None), tmp_path / "c")
    assert not (tmp_path / "c").exists()


# --- the real files, when the local mirror has them ---

needs_multi30k = pytest.mark.skipif(not (MIRROR / "multi30k" / "train.en").exists(), reason="no multi30k mirror")
needs_spa_eng = pytest.mark.skipif(not (MIRROR / "spa_eng" / "spa.txt").exists(), reason="no spa_eng mirror")


@needs_multi30k
def test_the_mirror_multi30k_has_the_published_sizes(monkeypatch):
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(MIRROR))
    sizes = {"train": 29_000, "val": 1_014, "test_2016_flickr": 1_000}
    for split, size in sizes.items():
        frame = datasets.load("multi30k", split, download=False)
        assert frame.shape == (size, 3), split
        assert (frame.map(len) > 0).all().all(), split
    assert frame.iloc[0]["en"] == "A man in an orange hat starring at something."


@needs_multi30k
def test_the_recorded_multi30k_checksums_are_those_of_the_mirror(empty_cache, monkeypatch):
    """The registered entry end to end: the mirror's files, gzipped and
    served as the official repository would, pass verification."""
    source = datasets.get("multi30k").source
    serve(
        monkeypatch,
        {source[f"{f}.gz"].url: gzip.compress((MIRROR / "multi30k" / f).read_bytes()) for f in MULTI30K_FILES},
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(datasets.load("multi30k", "val")) == 1_014
    assert (empty_cache / "multi30k" / "train.de").read_bytes() == (MIRROR / "multi30k" / "train.de").read_bytes()


@needs_spa_eng
def test_the_mirror_spa_eng_split_covers_all_pairs(monkeypatch):
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(MIRROR))
    splits = {s: datasets.load("spa_eng", s, download=False) for s in ("train", "valid", "test")}
    assert sum(len(frame) for frame in splits.values()) == 118_964
    # the sizes data/README.md states
    assert {s: (len(f), f["en"].nunique()) for s, f in splits.items()} == {
        "train": (106_989, 92_614),
        "valid": (6_002, 5_145),
        "test": (5_973, 5_145),
    }
    assert splits["train"].iloc[0].tolist() == ["Go.", "Ve."]


@needs_spa_eng
def test_the_recorded_spa_eng_checksum_is_that_of_the_mirror(empty_cache, monkeypatch):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(MIRROR / "spa_eng" / "spa.txt", "spa-eng/spa.txt")
        zipped.writestr("spa-eng/_about.txt", "about\n")
    serve(monkeypatch, {datasets.get("spa_eng").source.url: archive.getvalue()})
    with contextlib.redirect_stdout(io.StringIO()):
        assert len(datasets.load("spa_eng", "test")) == 5_973
    assert sorted(p.name for p in (empty_cache / "spa_eng").iterdir()) == ["spa.txt"]
