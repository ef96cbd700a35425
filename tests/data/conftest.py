"""Fixtures shared by the data tests."""

import pytest

from nlptool.data import datasets


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No data directory from the environment, a private cache, and no downloads."""
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(tmp_path / "no-env-data"))
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))

    def no_download(source, path):
        raise AssertionError(f"tried to download {source.url}")

    monkeypatch.setattr(datasets, "download", no_download)
    return tmp_path
