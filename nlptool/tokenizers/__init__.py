"""Tokenisers: Keras layers from strings to right-padded ids and back.

See `nlptool.tokenizers.base` for the contract shared by all of them.
"""

from nlptool.tokenizers.base import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNK_ID, Tokenizer
from nlptool.tokenizers.byte import ByteTokenizer
from nlptool.tokenizers.char import CharTokenizer
from nlptool.tokenizers.word import WordTokenizer

# these two need tensorflow-text: import them on first use, so that models
# with only word/char/byte tokenisers load without it
_LAZY = {
    "SentencePieceTokenizer": "nlptool.tokenizers.sentencepiece",
    "WordPieceTokenizer": "nlptool.tokenizers.wordpiece",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "ByteTokenizer",
    "CharTokenizer",
    "END_ID",
    "PAD_ID",
    "RESERVED_TOKENS",
    "SentencePieceTokenizer",
    "START_ID",
    "Tokenizer",
    "UNK_ID",
    "WordPieceTokenizer",
    "WordTokenizer",
]
