"""WordPiece tokeniser: a BERT-style subword vocabulary learnt from the data,
run in the graph by tensorflow-text's FastWordpieceTokenizer."""

import collections
from collections.abc import Iterable
from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from nlptool import compat
from nlptool.tokenizers.base import FIRST_ID, RESERVED_TOKENS, Tokenizer, TrainingTexts, batched

SUFFIX = "##"
# BERT's punctuation (what FastWordpieceTokenizer splits off): any Unicode P*
# character plus the ASCII symbols outside letters, digits and space
PUNCTUATION = r"([\p{P}!-/:-@\[-`{-~])"


@keras.saving.register_keras_serializable(package="nlptool")
class WordPieceTokenizer(Tokenizer):
    """Words split into the longest matching pieces of a learnt vocabulary.

    Normalisation, in the graph: with `lowercase`, Unicode lowercasing
    (`tf.strings.lower` with UTF-8); with `strip_accents`, Unicode NFD
    (`tensorflow_text.normalize_utf8`) and removal of every combining mark
    (category Mn), so "Ünïcödé" becomes "unicode". (NFD also decomposes
    Hangul syllables into jamo, as in BERT.) Then `FastWordpieceTokenizer`
    splits on whitespace and punctuation and each word is cut into pieces:
    a first piece and "##"-prefixed continuation pieces. A word that cannot
    be built from the vocabulary, e.g. one with an unseen character, becomes
    a single <unk> (id 1).

    `detokenize` joins pieces back into words and words with single spaces, so
    a round trip gives the normalised text with punctuation spaced out:
    "Héllo, world!" -> "hello , world !".

    `train` counts the normalised words and learns the vocabulary with
    tensorflow-text's WordPiece learner (the algorithm behind
    `bert_vocab_from_dataset`). Every character seen (up to `max_chars` of the
    most frequent ones) is in the vocabulary both alone and as a "##" suffix
    piece, so any word made of seen characters is tokenisable; because of that
    the vocabulary may exceed `vocab_size` on data with many characters.

    Args:
        vocabulary: list of pieces for ids 4, 5, ... (reserved tokens not
            included), or None until `train`.
        vocab_size: target vocabulary size, reserved ids included.
        lowercase: lowercase before splitting.
        strip_accents: NFD-normalise and drop combining marks.
        min_frequency: lowest count of a piece the learner may keep (the
            learner raises the threshold to meet `vocab_size`).
        max_chars: most distinct characters kept; words with rarer ones are
            not learnt from and tokenise to <unk>.
        **kwargs: `sequence_length`, `add_start`, `add_end` (see `Tokenizer`)
            and the arguments of a Keras layer.

    Example:

    >>> tokenizer = WordPieceTokenizer(vocab_size=60).train(["The cat sat.", "The cats sat!"] * 5)
    >>> ids = tokenizer(["The CATS sat."])
    >>> tokenizer.detokenize(ids).numpy().tolist()
    [b'the cats sat .']
    >>> tokenizer.detokenize(tokenizer(["the ☃"])).numpy().tolist()
    [b'the <unk>']
    """

    def __init__(
        self,
        vocabulary: Iterable[str] | None = None,
        vocab_size: int = 8000,
        lowercase: bool = True,
        strip_accents: bool = True,
        min_frequency: int = 1,
        max_chars: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= FIRST_ID:
            raise ValueError(
                "Received an invalid value for argument `vocab_size`, expected an integer greater than "
                f"{FIRST_ID}, got {vocab_size!r}."
            )
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(
                "Received an invalid value for argument `min_frequency`, expected a positive integer, "
                f"got {min_frequency!r}."
            )
        if not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(
                f"Received an invalid value for argument `max_chars`, expected a positive integer, got {max_chars!r}."
            )
        self.vocab_size = vocab_size
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.min_frequency = min_frequency
        self.max_chars = max_chars
        self.vocabulary: list[str] | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary: Iterable[str]) -> None:
        """Use `vocabulary` (pieces for ids 4, 5, ...; no reserved tokens)."""
        vocabulary = [str(piece) for piece in vocabulary]
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("`vocabulary` holds duplicate pieces.")
        if any(piece in RESERVED_TOKENS for piece in vocabulary):
            raise ValueError(f"`vocabulary` must not contain the reserved tokens {RESERVED_TOKENS}.")
        if any(not piece or piece == SUFFIX for piece in vocabulary):
            raise ValueError(f"`vocabulary` holds an empty piece or a bare {SUFFIX!r}.")
        self.vocabulary = vocabulary
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=list(RESERVED_TOKENS) + vocabulary,
            suffix_indicator=SUFFIX,
            token_out_type=tf.int64,
            unknown_token=RESERVED_TOKENS[1],
            no_pretokenization=False,
            support_detokenization=True,
        )

    def normalize(self, strings: tf.Tensor) -> tf.Tensor:
        """(batch,) strings -> normalised strings (see the class docstring)."""
        if self.lowercase:
            strings = tf.strings.lower(strings, encoding="utf-8")
        if self.strip_accents:
            strings = tf_text.normalize_utf8(strings, "NFD")
            strings = tf.strings.regex_replace(strings, r"\p{Mn}", "")
        return strings

    def _words(self, strings):
        # the same split as FastWordpieceTokenizer's pre-tokenisation
        strings = tf.strings.regex_replace(self.normalize(strings), PUNCTUATION, r" \1 ")
        return tf.strings.split(strings)

    def train(self, texts: TrainingTexts) -> "WordPieceTokenizer":
        words = tf.function(self._words, input_signature=[tf.TensorSpec([None], tf.string)])
        counts: collections.Counter[str] = collections.Counter()
        for batch in batched(texts):
            counts.update(w.decode("utf-8") for w in words(tf.constant(batch)).flat_values.numpy())
        if not counts:
            raise ValueError("Cannot train a WordPieceTokenizer on `texts` without any word.")
        vocabulary = compat.learn_wordpiece_vocabulary(
            counts,
            vocab_size=self.vocab_size,
            reserved_tokens=list(RESERVED_TOKENS),
            lower_thresh=self.min_frequency,
            max_unique_chars=self.max_chars,
            include_joiner_token=True,
            joiner=SUFFIX,
        )
        # the learner puts the reserved tokens first; drop them (they are ids 0-3 anyway) and the bare joiner
        self.set_vocabulary([p for p in vocabulary if p not in RESERVED_TOKENS and p != SUFFIX])
        return self

    def _check_trained(self) -> list[str]:
        """The vocabulary; ValueError if there is none yet."""
        if self.vocabulary is None:
            raise ValueError("This WordPieceTokenizer has no vocabulary yet: call `train(texts)` or pass `vocabulary`.")
        return self.vocabulary

    def vocabulary_size(self) -> int:
        return FIRST_ID + len(self._check_trained())

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        self._check_trained()
        # with pre-tokenisation on, FastWordpieceTokenizer gives (batch, pieces)
        return tf.cast(self._wordpiece.tokenize(self.normalize(strings)), tf.int32)

    def ids_to_text(self, ids: tf.RaggedTensor) -> tf.Tensor:
        self._check_trained()
        return self._wordpiece.detokenize(tf.cast(ids, tf.int64))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "vocab_size": self.vocab_size,
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "min_frequency": self.min_frequency,
                "max_chars": self.max_chars,
            }
        )
        return config
