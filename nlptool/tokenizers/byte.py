"""Byte tokeniser: UTF-8 bytes, no vocabulary to learn. Core TF ops only."""

import keras
import tensorflow as tf

from nlptool.tokenizers.base import FIRST_ID as OFFSET  # byte b has id b + 4
from nlptool.tokenizers.base import Tokenizer


@keras.saving.register_keras_serializable(package="nlptool")
class ByteTokenizer(Tokenizer):
    """Each UTF-8 byte is a token: 260 ids, nothing unknown, exact round trip.

    Example:

    >>> tokenizer = ByteTokenizer(add_end=True)
    >>> tokenizer(["hé"]).numpy().tolist()
    [[108, 199, 173, 3]]
    >>> tokenizer.detokenize(tokenizer(["hé"])).numpy()[0].decode("utf-8")
    'hé'
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        byte_strings = tf.constant([bytes([b]) for b in range(256)])
        self._byte_strings = byte_strings
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(byte_strings, tf.range(OFFSET, OFFSET + 256, dtype=tf.int32)),
            default_value=-1,
        )

    def vocabulary_size(self):
        return OFFSET + 256

    def train(self, texts):
        """Nothing to learn; present so that every tokeniser trains alike."""
        return self

    def tokenize(self, strings):
        return self._table.lookup(tf.strings.bytes_split(strings))

    def ids_to_text(self, ids):
        ids = tf.ragged.boolean_mask(ids, ids >= OFFSET)  # unknown ids cannot occur; drop them if given
        return tf.strings.reduce_join(tf.gather(self._byte_strings, ids - OFFSET), axis=1)
