"""Data: the registry of real datasets and the reading of the user's files.

`datasets` is the registry; `files` reads the user's CSV, TSV, JSON Lines and
text files, `labels` their labels, `splits` holds out validation data.
"""

from nlptool.data import datasets
from nlptool.data.datasets import DatasetError, load, locate
from nlptool.data.files import read_lines, read_parallel, read_table
from nlptool.data.labels import LabelMap
from nlptool.data.splits import load_labeled_data
from nlptool.errors import DataError

__all__ = [
    "DataError",
    "DatasetError",
    "LabelMap",
    "datasets",
    "load",
    "load_labeled_data",
    "locate",
    "read_lines",
    "read_parallel",
    "read_table",
]
