"""The tokeniser contract.

A tokeniser is a Keras layer. Called on a batch of strings (shape (batch,)
or (batch, 1)) it returns right-padded int32 ids (batch, length); `detokenize`
maps ids back to strings. Ids 0-3 are reserved in every tokeniser:

    0 <pad>   padding, and what Embedding(mask_zero=True) masks
    1 <unk>   anything outside the vocabulary
    2 <s>     start of sequence (added when `add_start=True`)
    3 </s>    end of sequence (added when `add_end=True`)

Length: `sequence_length=None` pads to the longest row of the batch;
an integer pads or truncates every row to exactly that length (truncation
keeps the first tokens and, with `add_end`, still ends in </s>).

Vocabularies are learnt by `train(texts)` from any iterable of strings: a
list, a pandas Series, or a tf.data.Dataset of scalar or batched strings.
They travel with the layer's config, so `.keras` files and SavedModels carry
them; inside the graph only core TensorFlow ops run (except the WordPiece
and SentencePiece tokenisers, which use tensorflow-text ops).
"""

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TypeAlias

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("nlptool.tokenizers")
PROGRESS_EVERY = 100_000  # texts between progress messages while training

PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3
RESERVED_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
FIRST_ID = len(RESERVED_TOKENS)  # the first id of a learnt vocabulary

# what `train` learns from: any iterable of strings (a list, a pandas Series, a NumPy array), or a
# tf.data.Dataset of scalar or batched strings
TrainingTexts: TypeAlias = Iterable[str] | Iterable[bytes] | tf.data.Dataset
# what calling a tokeniser, `cut` and `lengths` take: a string, a list (or NumPy array, pandas Series)
# of strings, or a tf.string tensor of shape (batch,) or (batch, 1)
Strings: TypeAlias = str | Sequence[str] | np.ndarray | tf.Tensor
# what `detokenize` takes: ids, dense with padding (a tensor, an array, nested lists) or ragged
Ids: TypeAlias = tf.Tensor | tf.RaggedTensor | np.ndarray | Sequence[Sequence[int]]


def iterate_texts(texts: TrainingTexts) -> Iterator[str]:
    """Yield Python strings from a list, pandas Series, NumPy array or
    tf.data.Dataset (scalar or batched elements)."""
    if isinstance(texts, tf.data.Dataset):
        for element in texts.as_numpy_iterator():
            values = np.asarray(element).reshape(-1)
            for value in values:
                yield value.decode("utf-8") if isinstance(value, bytes) else str(value)
        return
    if isinstance(texts, str):
        raise TypeError("Expected an iterable of strings, got a single string; wrap it in a list.")
    for i, value in enumerate(texts):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError(f"Expected strings, got {type(value).__name__} at position {i}: {value!r}.")
        yield value


def batched(texts: TrainingTexts, batch_size: int = 4096) -> Iterator[list[str]]:
    """Lists of up to `batch_size` strings from `iterate_texts(texts)`.

    On large inputs it logs its progress (logger "nlptool.tokenizers") every
    PROGRESS_EVERY texts, so a long vocabulary count is visibly alive.
    """
    batch, count = [], 0
    for text in iterate_texts(texts):
        batch.append(text)
        count += 1
        if count % PROGRESS_EVERY == 0:
            logger.info("read %s texts", f"{count:,}")
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
    if count >= PROGRESS_EVERY:
        logger.info("read %s texts in all", f"{count:,}")


class Tokenizer(keras.layers.Layer):
    """Base class: subclasses implement `tokenize` (strings -> ragged ids
    without start/end) and `ids_to_text` (ragged ids without reserved ids ->
    strings), plus `vocabulary_size` and `train`.

    Args:
        sequence_length: None to pad to the longest row, or a positive int.
        add_start: prepend <s> (id 2) to every row.
        add_end: append </s> (id 3) to every row.
    """

    def __init__(
        self, sequence_length: int | None = None, add_start: bool = False, add_end: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if sequence_length is not None and (
            not isinstance(sequence_length, int) or isinstance(sequence_length, bool) or sequence_length <= 0
        ):
            raise ValueError(
                "Received an invalid value for argument `sequence_length`, expected None or a "
                f"positive integer, got {sequence_length!r}."
            )
        self.sequence_length = sequence_length
        self.add_start = add_start
        self.add_end = add_end
        self.built = True

    # --- to implement ---
    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """(batch,) tf.string -> tf.RaggedTensor of int32 ids (no padding)."""
        raise NotImplementedError

    def ids_to_text(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """tf.RaggedTensor of int32 ids (reserved ids removed) -> (batch,) tf.string."""
        raise NotImplementedError

    def vocabulary_size(self) -> int:
        raise NotImplementedError

    # --- shared ---
    @staticmethod
    def _as_batch(strings: Strings) -> tf.Tensor:
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        if strings.shape.rank == 2:
            strings = tf.squeeze(strings, axis=1)  # (batch, 1) from keras.Input(shape=(1,))
        elif strings.shape.rank == 0:
            strings = strings[None]
        return strings

    def __call__(self, strings: Strings, *args: Any, **kwargs: Any) -> tf.Tensor:
        # Keras accepts only tensors positionally; let users pass Python
        # strings, lists, NumPy arrays and pandas Series
        if not (tf.is_tensor(strings) or isinstance(strings, tf.RaggedTensor) or keras.ops.is_tensor(strings)):
            if not isinstance(strings, keras.KerasTensor):
                strings = tf.constant(np.asarray(strings, dtype=object).tolist(), tf.string)
        return super().__call__(strings, *args, **kwargs)

    def call(self, strings: tf.Tensor) -> tf.Tensor:
        ids = self.tokenize(self._as_batch(strings))
        length = self.sequence_length
        if length is not None:
            room = length - int(self.add_start) - int(self.add_end)
            if room < 0:
                raise ValueError(f"`sequence_length`={length} leaves no room for the start and end tokens.")
            ids = ids[:, :room]  # truncation keeps the first tokens
        return self._framed(ids, None if length is None else [None, length])

    def _framed(self, ids, shape=None):
        """Ragged ids with the start and end tokens this tokeniser adds, padded (to `shape`, or the longest row)."""
        rows = tf.shape(ids.row_lengths())[0]
        if self.add_start:
            ids = tf.concat([tf.fill([rows, 1], START_ID), ids], axis=1)
        if self.add_end:
            ids = tf.concat([ids, tf.fill([rows, 1], END_ID)], axis=1)
        return ids.to_tensor(default_value=PAD_ID, shape=shape)

    def cut(self, strings: Strings, max_tokens: int | tf.Tensor, keep: Literal["first", "last"] = "first") -> tf.Tensor:
        """Ids of `strings` as calling the tokeniser gives them (its start and
        end tokens, padded to the longest row), with each text's tokens cut
        to their first (`keep="first"`) or last (`"last"`) `max_tokens`
        before the batch is padded: one long text then costs no more memory
        than a text of `max_tokens`. `max_tokens` may be a scalar tensor."""
        ids = self.tokenize(self._as_batch(strings))
        if keep == "first":
            return self._framed(ids[:, :max_tokens])
        if keep == "last":
            return self._framed(ids[:, -max_tokens:])
        raise ValueError(f"Received an invalid value for argument `keep`, expected 'first' or 'last', got {keep!r}.")

    def lengths(self, strings: Strings) -> tf.Tensor:
        """(batch,) int32: the ids calling the tokeniser gives each of
        `strings`, padding excluded, without padding any batch."""
        lengths = tf.cast(self.tokenize(self._as_batch(strings)).row_lengths(), tf.int32)
        if self.sequence_length is not None:
            lengths = tf.minimum(lengths, self.sequence_length - int(self.add_start) - int(self.add_end))
        return lengths + int(self.add_start) + int(self.add_end)

    def detokenize(self, ids: Ids) -> tf.Tensor:
        """Ids (dense with padding, or ragged) -> (batch,) tf.string.
        Padding, start and end ids are dropped; decoding stops at the first </s>."""
        ids = tf.convert_to_tensor(ids) if not isinstance(ids, tf.RaggedTensor) else ids
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.cast(ids, tf.int32))
        ids = tf.cast(ids, tf.int32)
        # everything from the first </s> on is not part of the text
        is_end = tf.cast(tf.equal(ids, END_ID), tf.int32)
        before_end = tf.equal(tf.cumsum(is_end, axis=1), 0)
        keep = tf.logical_and(before_end, tf.logical_and(ids != PAD_ID, ids != START_ID))
        return self.ids_to_text(tf.ragged.boolean_mask(ids, keep))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, int | None]:
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, strings: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor((strings.shape[0], self.sequence_length), dtype="int32")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length, "add_start": self.add_start, "add_end": self.add_end})
        return config
