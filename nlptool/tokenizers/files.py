"""A tokeniser as a file: DIR/tokenizer.json, written atomically."""

import json
import os
import tempfile
from pathlib import Path

import keras

TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tokenizer, directory):
    """Write `directory`/tokenizer.json (class, config and vocabulary or
    model) so that a reader never sees half a file; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(keras.saving.serialize_keras_object(tokenizer), ensure_ascii=False)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, delete=False, suffix=".tmp") as handle:
        handle.write(payload)
    os.replace(handle.name, directory / TOKENIZER_FILE)
    return directory / TOKENIZER_FILE


def load_tokenizer(directory):
    """The tokeniser saved in `directory` by `save_tokenizer`."""
    from nlptool import tokenizers

    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {TOKENIZER_FILE}.")
    # the subword tokenisers are imported lazily; touching them registers them with Keras
    tokenizers.SentencePieceTokenizer, tokenizers.WordPieceTokenizer  # noqa: B018
    return keras.saving.deserialize_keras_object(json.loads(path.read_text(encoding="utf-8")))
