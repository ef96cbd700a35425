"""Word tokeniser: Unicode lowercasing, punctuation split, whitespace split.
Core TF ops only, so a model using it serves without tensorflow-text."""

import collections
from collections.abc import Iterable
from typing import Any

import keras
import tensorflow as tf

from nlptool.tokenizers.base import FIRST_ID, RESERVED_TOKENS, UNK_ID, Ids, Tokenizer, TrainingTexts, batched

# RE2: any Unicode punctuation or symbol character becomes its own token
PUNCTUATION = r"([\p{P}\p{S}])"


@keras.saving.register_keras_serializable(package="nlptool")
class WordTokenizer(Tokenizer):
    """Words from whitespace and punctuation, looked up in a learnt vocabulary.

    Normalisation, in the graph: optional Unicode lowercasing
    (`tf.strings.lower` with UTF-8), then every punctuation or symbol
    character is split off as its own token, then whitespace splits.
    `detokenize` joins tokens with single spaces, so a round trip gives the
    normalised, space-separated text. (Unicode NFKC/NFD normalisation needs
    tensorflow-text: use the WordPiece or SentencePiece tokenisers for it.)

    Args:
        vocabulary: list of tokens (ids 4, 5, ...), or None until `train`.
        max_size: most tokens kept by `train`, reserved ids excluded (None: all).
        min_frequency: tokens seen fewer times are left out by `train`.
        lowercase: lowercase before splitting.
        split_punctuation: split punctuation and symbols off words.
        **kwargs: `sequence_length`, `add_start`, `add_end` (see `Tokenizer`)
            and the arguments of a Keras layer.

    Example:

    >>> tokenizer = WordTokenizer().train(["The cat sat.", "the CAT!"])
    >>> tokenizer.vocabulary
    ['cat', 'the', '!', '.', 'sat']
    >>> tokenizer(["The dog sat."]).numpy().tolist()
    [[5, 1, 8, 7]]
    """

    def __init__(
        self,
        vocabulary: Iterable[str] | None = None,
        max_size: int | None = None,
        min_frequency: int = 1,
        lowercase: bool = True,
        split_punctuation: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_size is not None and max_size <= 0:
            raise ValueError(
                "Received an invalid value for argument `max_size`, expected a positive integer "
                f"or None, got {max_size!r}."
            )
        self.max_size = max_size
        self.min_frequency = min_frequency
        self.lowercase = lowercase
        self.split_punctuation = split_punctuation
        self.vocabulary: list[str] | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: Iterable[str]) -> None:
        vocabulary = [str(token) for token in vocabulary]
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("`vocabulary` holds duplicate tokens.")
        self.vocabulary = vocabulary
        tokens = tf.constant(vocabulary, tf.string) if vocabulary else tf.zeros([0], tf.string)
        ids = tf.range(FIRST_ID, FIRST_ID + len(vocabulary), dtype=tf.int32)
        self._table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tokens, ids), default_value=UNK_ID)
        self._tokens = tf.concat([tf.constant(RESERVED_TOKENS), tokens], axis=0)

    def split(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """(batch,) strings -> ragged (batch, None) normalised token strings."""
        if self.lowercase:
            strings = tf.strings.lower(strings, encoding="utf-8")
        if self.split_punctuation:
            strings = tf.strings.regex_replace(strings, PUNCTUATION, r" \1 ")
        return tf.strings.split(strings)

    def train(self, texts: TrainingTexts) -> "WordTokenizer":
        split = tf.function(self.split, input_signature=[tf.TensorSpec([None], tf.string)])
        counts: collections.Counter[str] = collections.Counter()
        for batch in batched(texts):
            counts.update(t.decode("utf-8") for t in split(tf.constant(batch)).flat_values.numpy())
        # a reserved token written in the text ("<unk>" in PTB and WikiText-2) keeps its reserved meaning
        kept = [(t, n) for t, n in counts.items() if n >= self.min_frequency and t not in RESERVED_TOKENS]
        kept.sort(key=lambda item: (-item[1], item[0]))  # most frequent first, ties alphabetical
        if self.max_size is not None:
            kept = kept[: self.max_size]
        self.set_vocabulary([token for token, _ in kept])
        return self

    def _check_trained(self) -> list[str]:
        """The vocabulary; ValueError if there is none yet."""
        if self.vocabulary is None:
            raise ValueError("This WordTokenizer has no vocabulary yet: call `train(texts)` or pass `vocabulary`.")
        return self.vocabulary

    def vocabulary_size(self) -> int:
        return FIRST_ID + len(self._check_trained())

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        self._check_trained()
        return self._table.lookup(self.split(strings))

    def tokens(self, ids: Ids) -> tf.Tensor:
        """The token string of every id, in the shape of `ids` (reserved ids as "<pad>", "<unk>", ...)."""
        vocabulary = self._check_trained()
        return tf.gather(self._tokens, tf.clip_by_value(tf.cast(ids, tf.int32), 0, FIRST_ID + len(vocabulary) - 1))

    def ids_to_text(self, ids: tf.RaggedTensor) -> tf.Tensor:
        vocabulary = self._check_trained()
        ids = tf.clip_by_value(ids, 0, FIRST_ID + len(vocabulary) - 1)
        return tf.strings.reduce_join(tf.gather(self._tokens, ids), axis=1, separator=" ")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "max_size": self.max_size,
                "min_frequency": self.min_frequency,
                "lowercase": self.lowercase,
                "split_punctuation": self.split_punctuation,
            }
        )
        return config
