"""Tokenisers: Keras layers from strings to right-padded ids and back.

See `nlptool.tokenizers.base` for the contract shared by all of them.
"""

from typing import TYPE_CHECKING, Any

from nlptool.tokenizers.base import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNK_ID, Tokenizer
from nlptool.tokenizers.byte import ByteTokenizer
from nlptool.tokenizers.char import CharTokenizer
from nlptool.tokenizers.word import WordTokenizer

if TYPE_CHECKING:  # what type checkers see of the names imported on first use below
    from nlptool.tokenizers.sentencepiece import SentencePieceTokenizer
    from nlptool.tokenizers.wordpiece import WordPieceTokenizer

# these two need tensorflow-text: import them on first use, so that models
# with only word/char/byte tokenisers load without it
_LAZY = {
    "SentencePieceTokenizer": "nlptool.tokenizers.sentencepiece",
    "WordPieceTokenizer": "nlptool.tokenizers.wordpiece",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


KINDS = ("word", "char", "byte", "wordpiece", "sentencepiece")


def create(kind: str, vocab_size: int | None = None, **kwargs: Any) -> Tokenizer:
    """An untrained tokeniser of `kind` with `vocab_size` ids, reserved ids
    included (ignored for "byte", whose 260 ids are fixed). Other keyword
    arguments go to the tokeniser's constructor."""
    if kind not in KINDS:
        raise ValueError(f"Received an invalid value for argument `kind`, expected one of {KINDS}, got {kind!r}.")
    if kind == "byte":
        return ByteTokenizer(**kwargs)
    if not isinstance(vocab_size, int) or vocab_size <= len(RESERVED_TOKENS):
        raise ValueError(
            f"Received an invalid value for argument `vocab_size`, expected an integer above "
            f"{len(RESERVED_TOKENS)} for kind {kind!r}, got {vocab_size!r}."
        )
    if kind == "word":
        return WordTokenizer(max_size=vocab_size - len(RESERVED_TOKENS), **kwargs)
    if kind == "char":
        return CharTokenizer(max_size=vocab_size - len(RESERVED_TOKENS), **kwargs)
    if kind == "wordpiece":
        return __getattr__("WordPieceTokenizer")(vocab_size=vocab_size, **kwargs)
    return __getattr__("SentencePieceTokenizer")(vocab_size=vocab_size, **kwargs)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "KINDS",
    "create",
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
