"""Data: the registry of real datasets and the reading of users' CSV files."""

from nlptool.data import datasets
from nlptool.data.datasets import DatasetError, load, locate

__all__ = ["DatasetError", "datasets", "load", "locate"]
