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
    size: int
    sha256: str


@dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    Attributes:
        name: registry key, also the folder name in a data directory.
        task: what the examples are for, e.g. "classification".
        files: split name -> file path relative to the dataset folder.
        read: reads one split file into a DataFrame with columns text, label.
        source: the canonical download.
        prepare: turns the extracted archive (a folder) into `files` inside
            a dataset folder.
        label_names: label value -> human-readable class name.
        description: one line: what it is, sizes, licence or terms.
    """

    name: str
    task: str
    files: dict
    read: Callable[[Path], pd.DataFrame]
    source: Source
    prepare: Callable[[Path, Path], None]
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
    """The examples of `split` as a DataFrame with columns text and label."""
    dataset = get(name)
    if split not in dataset.files:
        raise DatasetError(f"Dataset {name!r} has no split {split!r}; its splits are {list(dataset.splits)}.")
    path = locate(name, data_dir, download) / dataset.files[split]
    try:
        frame = dataset.read(path)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as error:
        raise DatasetError(f"Cannot read {path} as split {split!r} of {name!r}: {error}") from error
    if list(frame.columns) != ["text", "label"] or frame.empty:
        raise DatasetError(f"{path} did not give (text, label) examples; check that the file is complete.")
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
        archive = work / "archive"
        print(f"Downloading {dataset.name} from {dataset.source.url} ({dataset.source.size / 1e6:.0f} MB)")
        download(dataset.source, archive)
        extracted = work / "extracted"
        extract(archive, extracted)
        staged = work / dataset.name
        staged.mkdir()
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
    if size != source.size or digest.hexdigest() != source.sha256:
        path.unlink()
        raise DatasetError(
            f"The download from {source.url} does not match its record: got {size} bytes with SHA-256 "
            f"{digest.hexdigest()}, expected {source.size} bytes with SHA-256 {source.sha256}."
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


def _read_imdb(path):
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


def _read_sst2(path):
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
