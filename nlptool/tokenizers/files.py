"""A tokeniser as a file: DIR/tokenizer.json, written atomically."""

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from nlptool.files import write_atomically

if TYPE_CHECKING:
    from nlptool.tokenizers.base import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tokenizer: "Tokenizer", directory: str | os.PathLike[str]) -> Path:
    """Write `directory`/tokenizer.json (class, config and vocabulary or
    model) so that a reader never sees half a file; returns its path."""
    payload = keras.saving.serialize_keras_object(tokenizer)
    return write_atomically(
        Path(directory) / TOKENIZER_FILE, lambda stream: json.dump(payload, stream, ensure_ascii=False)
    )


def load_tokenizer(directory: str | os.PathLike[str]) -> "Tokenizer":
    """The tokeniser saved in `directory` by `save_tokenizer`."""
    from nlptool import tokenizers

    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {TOKENIZER_FILE}.")
    # the subword tokenisers are imported lazily; touching them registers them with Keras
    tokenizers.SentencePieceTokenizer, tokenizers.WordPieceTokenizer  # noqa: B018
    return keras.saving.deserialize_keras_object(json.loads(path.read_text(encoding="utf-8")))
