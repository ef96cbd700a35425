"""Fixtures shared across the test suite."""

import contextlib
import os

import keras
import pytest

from nlptool import training


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """Presets unpack into a cache of the test session's own (inherited by the processes tests start),
    not into the user's."""
    os.environ["NLPTOOL_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


class _InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


@pytest.fixture
def interrupted_at_epoch():
    """`with interrupted_at_epoch(n): train(...)` runs a training whose
    callbacks raise KeyboardInterrupt as epoch n begins (after the backup of
    epoch n - 1 is written), and fails unless that interruption happened."""

    @contextlib.contextmanager
    def interrupted(epoch):
        real = training.callbacks
        training.callbacks = lambda *args, **kwargs: real(*args, **kwargs) + [_InterruptAtEpoch(epoch)]
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            training.callbacks = real

    return interrupted
