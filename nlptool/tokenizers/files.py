"""A tokeniser as a file: DIR/tokenizer.json, written atomically."""

import json
from pathlib import Path

import keras

from nlptool.files import write_atomically

TOKENIZER_FILE = "tokenizer.json"


def save_tokenizer(tokenizer, directory):
    """Write `directory`/tokenizer.json (class, config and vocabulary or
    model) so that a reader never sees half a file; returns its path."""
    payload = keras.saving.serialize_keras_object(tokenizer)
    return write_atomically(
        Path(directory) / TOKENIZER_FILE, lambda stream: json.dump(payload, stream, ensure_ascii=False)
    )


def load_tokenizer(directory):
    """The tokeniser saved in `directory` by `save_tokenizer`."""
    from nlptool import tokenizers

    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {TOKENIZER_FILE}.")
    # the subword tokenisers are imported lazily; touching them registers them with Keras
    tokenizers.SentencePieceTokenizer, tokenizers.WordPieceTokenizer  # noqa: B018
    return keras.saving.deserialize_keras_object(json.loads(path.read_text(encoding="utf-8")))
