"""The runnable examples in docstrings stay runnable."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "nlptool.layers.attention",
        "nlptool.layers.gru",
        "nlptool.tokenizers.byte",
        "nlptool.tokenizers.char",
        "nlptool.tokenizers.word",
        "nlptool.tokenizers.sentencepiece",
        "nlptool.tokenizers.wordpiece",
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0
