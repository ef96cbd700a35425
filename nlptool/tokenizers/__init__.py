"""Tokenisers: Keras layers from strings to right-padded ids and back.

See `nlptool.tokenizers.base` for the contract shared by all of them.
"""

from nlptool.tokenizers.base import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNK_ID, Tokenizer
from nlptool.tokenizers.byte import ByteTokenizer
from nlptool.tokenizers.char import CharTokenizer
from nlptool.tokenizers.word import WordTokenizer

__all__ = [
    "ByteTokenizer",
    "CharTokenizer",
    "END_ID",
    "PAD_ID",
    "RESERVED_TOKENS",
    "START_ID",
    "Tokenizer",
    "UNK_ID",
    "WordTokenizer",
]
