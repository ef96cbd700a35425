"""tf.data pipelines of text pairs (source, target): translation, summarisation.

Pairs are tokenised once into ragged id tensors; batches group pairs of
similar length and carry teacher-forcing inputs and outputs.
"""

import numpy as np
import tensorflow as tf

from nlptool.data.pipeline import bucketed_batches, length_boundaries
from nlptool.errors import DataError
from nlptool.tokenizers import END_ID, START_ID

TOKENIZE_BATCH = 4096
COPY_BATCH = 256  # pairs per dense batch when extending ids (length x length comparisons)


def encode(tokenizer, texts):
    """The texts as a tf.RaggedTensor of ids (no start or end tokens)."""
    parts = [
        tokenizer.tokenize(tf.constant(list(texts[start : start + TOKENIZE_BATCH]), tf.string))
        for start in range(0, len(texts), TOKENIZE_BATCH)
    ]
    return tf.concat(parts, axis=0) if parts else tf.ragged.constant([], dtype=tf.int32, ragged_rank=1)


def encode_pairs(source_tokenizer, target_tokenizer, frame, max_length=None):
    """(source ids, target ids) of the pairs in `frame`, as tf.RaggedTensors
    without start or end tokens. Pairs where the source plus </s> or <s>
    plus the target is longer than `max_length` tokens are left out."""
    source = encode(source_tokenizer, frame["source"].tolist())
    target = encode(target_tokenizer, frame["target"].tolist())
    if max_length:
        keep = tf.logical_and(source.row_lengths() < max_length, target.row_lengths() < max_length)
        source, target = tf.ragged.boolean_mask(source, keep), tf.ragged.boolean_mask(target, keep)
    if int(source.nrows()) == 0:
        raise DataError(
            f"No sentence pair of {len(frame)} fits in {max_length} tokens a side (with </s> or <s>); "
            "raise training.max_length."
        )
    return source, target


def encode_copy_pairs(tokenizer, frame, max_source_length, max_target_length, extend=False):
    """(source ids, target ids) of the (text, summary) pairs in `frame` for
    a model with one vocabulary, as tf.RaggedTensors without start or end
    tokens: texts cut to `max_source_length` tokens, summaries to
    `max_target_length`. With `extend` (a word tokeniser and the copy
    distribution), out-of-vocabulary words take their text's extended ids
    (`nlptool.models.pointer_generator.extend_ids`)."""
    from nlptool.models import pointer_generator

    vocabulary_size = tokenizer.vocabulary_size()
    parts = []
    for start in range(0, len(frame), COPY_BATCH):
        rows = frame.iloc[start : start + COPY_BATCH]
        texts, summaries = tf.constant(rows["text"].tolist()), tf.constant(rows["summary"].tolist())
        source = tokenizer.tokenize(texts)[:, :max_source_length]
        target = tokenizer.tokenize(summaries)[:, :max_target_length]
        if extend:
            source_words = tokenizer.split(texts)[:, :max_source_length].to_tensor("")
            target_words = tokenizer.split(summaries)[:, :max_target_length].to_tensor("")
            extended, _ = pointer_generator.extend_ids(source_words, source.to_tensor(0), vocabulary_size)
            target_ids = pointer_generator.extend_target_ids(
                target_words, target.to_tensor(0), source_words, extended, vocabulary_size
            )
            source = tf.RaggedTensor.from_tensor(extended, lengths=source.row_lengths())
            target = tf.RaggedTensor.from_tensor(target_ids, lengths=target.row_lengths())
        parts.append((source, target))
    if not parts:
        raise DataError("There are no text-summary pairs to encode.")
    return tf.concat([s for s, _ in parts], axis=0), tf.concat([t for _, t in parts], axis=0)


def pair_dataset(
    source_tokenizer, target_tokenizer, frame, batch_size, max_length=None, shuffle=False, seed=0, epoch=None
):
    """Batches ((source, target_input), target_output) of the pairs in `frame`
    (see `encode_pairs` and `batch_pairs`)."""
    pairs = encode_pairs(source_tokenizer, target_tokenizer, frame, max_length)
    return batch_pairs(*pairs, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)


def batch_pairs(source, target, batch_size, shuffle=False, seed=0, epoch=None):
    """Batches ((source, target_input), target_output) of encoded pairs.

    source is the source ids then </s>; target_input is <s> then the target
    ids, target_output the target ids then </s> (teacher forcing); each is
    right-padded with 0. Pairs of similar length share a batch (bucketing at
    the length quantiles). With `shuffle`, each epoch's order is a function
    of `seed` and the `epoch` variable (see nlptool.training.EpochCounter),
    so resumed training sees the same batches.
    """
    count = int(source.nrows())
    lengths = np.maximum(source.row_lengths().numpy(), target.row_lengths().numpy()) + 1
    boundaries = length_boundaries(lengths, buckets=min(8, max(1, count // batch_size)))

    if shuffle:

        def one_epoch(_):
            epoch_value = tf.constant(0, tf.int64) if epoch is None else tf.cast(epoch.read_value(), tf.int64)
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch_value])
            )
            return tf.data.Dataset.from_tensor_slices(order)

        indices = tf.data.Dataset.range(1).flat_map(one_epoch)
    else:
        indices = tf.data.Dataset.range(count)

    def pair(index):
        source_ids, target_ids = source[index], target[index]
        end, start = tf.constant([END_ID]), tf.constant([START_ID])
        return tf.concat([source_ids, end], 0), tf.concat([start, target_ids], 0), tf.concat([target_ids, end], 0)

    dataset = indices.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda s, t_in, t_out: tf.maximum(tf.shape(s)[0], tf.shape(t_in)[0]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], [None], [None]),
    )
    dataset = dataset.map(lambda s, t_in, t_out: ((s, t_in), t_out))
    # a known length: Keras then knows the epoch's end from the first epoch on
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(bucketed_batches(lengths, boundaries, batch_size)))
    return dataset.prefetch(tf.data.AUTOTUNE)
