"""Character (Unicode code point) tokeniser. Core TF ops only."""

import collections
from collections.abc import Iterable
from typing import Any

import keras
import tensorflow as tf

from nlptool.tokenizers.base import FIRST_ID, Tokenizer, TrainingTexts, batched

REPLACEMENT = 0xFFFD  # what <unk> decodes to


@keras.saving.register_keras_serializable(package="nlptool")
class CharTokenizer(Tokenizer):
    """One token per Unicode code point; the vocabulary is the most frequent
    code points of the training text. Invalid UTF-8 decodes as U+FFFD.

    Args:
        vocabulary: list of single-character strings (ids 4, 5, ...), or
            None until `train` is called.
        max_size: most code points kept by `train` (None: all).
        min_frequency: code points seen fewer times are left out by `train`.
        **kwargs: `sequence_length`, `add_start`, `add_end` (see `Tokenizer`)
            and the arguments of a Keras layer.

    Example:

    >>> tokenizer = CharTokenizer().train(["abba", "cab"])
    >>> tokenizer.vocabulary
    ['a', 'b', 'c']
    >>> tokenizer(["cab", "x"]).numpy().tolist()
    [[6, 4, 5], [1, 0, 0]]
    """

    def __init__(
        self,
        vocabulary: Iterable[str] | None = None,
        max_size: int | None = None,
        min_frequency: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_size = max_size
        self.min_frequency = min_frequency
        self.vocabulary: list[str] | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: Iterable[str]) -> None:
        vocabulary = list(vocabulary)
        for i, ch in enumerate(vocabulary):
            if len(ch) != 1:
                raise ValueError(f"Expected single characters in `vocabulary`, got {ch!r} at position {i}.")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("`vocabulary` holds duplicate characters.")
        self.vocabulary = vocabulary
        code_points = tf.constant([ord(ch) for ch in vocabulary], tf.int32)
        ids = tf.range(FIRST_ID, FIRST_ID + len(vocabulary), dtype=tf.int32)
        self._table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(code_points, ids), default_value=1)
        # id -> code point; reserved ids decode to U+FFFD but are removed before decoding
        self._code_points = tf.concat([tf.fill([FIRST_ID], REPLACEMENT), code_points], axis=0)

    def train(self, texts: TrainingTexts) -> "CharTokenizer":
        counts: collections.Counter[str] = collections.Counter()
        for batch in batched(texts):
            for text in batch:
                counts.update(text)
        kept = [(ch, n) for ch, n in counts.items() if n >= self.min_frequency]
        kept.sort(key=lambda item: (-item[1], item[0]))  # most frequent first, ties by code point
        if self.max_size is not None:
            kept = kept[: self.max_size]
        self.set_vocabulary([ch for ch, _ in kept])
        return self

    def vocabulary_size(self) -> int:
        return FIRST_ID + len(self._check_trained())

    def _check_trained(self) -> list[str]:
        """The vocabulary; ValueError if there is none yet."""
        if self.vocabulary is None:
            raise ValueError("This CharTokenizer has no vocabulary yet: call `train(texts)` or pass `vocabulary`.")
        return self.vocabulary

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        self._check_trained()
        code_points = tf.strings.unicode_decode(strings, "UTF-8", errors="replace", replacement_char=REPLACEMENT)
        return self._table.lookup(code_points)

    def ids_to_text(self, ids: tf.RaggedTensor) -> tf.Tensor:
        vocabulary = self._check_trained()
        ids = tf.clip_by_value(ids, 0, len(vocabulary) + FIRST_ID - 1)
        return tf.strings.unicode_encode(tf.gather(self._code_points, ids), "UTF-8")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary, "max_size": self.max_size, "min_frequency": self.min_frequency})
        return config
