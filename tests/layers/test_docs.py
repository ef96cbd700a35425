"""The runnable examples in docstrings stay runnable."""

import doctest

import nlptool.layers.gru


def test_gru_docstring_example():
    result = doctest.testmod(nlptool.layers.gru, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0
