"""tf.data input pipelines: raw strings in, padded id batches out.

Training reads raw (text, target) pairs, tokenises them in the pipeline (so
the accelerator is fed while the CPU tokenises the next batches), groups
examples of similar length into the same batch, pads each batch to its
longest example, and prefetches. Grouping by length cuts the padding the GRU
has to step through; on SST-2-like data it removes most of it.
"""

import numpy as np
import tensorflow as tf


def length_boundaries(lengths, buckets=8):
    """Bucket boundaries at the quantiles of `lengths` (token counts), so
    that each bucket holds about the same number of examples."""
    lengths = np.asarray(lengths)
    if lengths.size == 0:
        raise ValueError("Cannot compute bucket boundaries from no lengths.")
    quantiles = np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:-1])
    # boundaries are exclusive upper bounds and must increase strictly
    return sorted({int(q) + 1 for q in quantiles})


def make_dataset(
    texts,
    targets,
    tokenizer,
    batch_size,
    shuffle=True,
    seed=None,
    bucket_boundaries="auto",
    sample_size=10_000,
    epoch=None,
    max_length=None,
):
    """A dataset of (ids, target) batches from raw strings.

    Args:
        texts: sequence of strings (list, NumPy array, pandas Series).
        targets: sequence of targets aligned with `texts` (class ids, ...).
        tokenizer: an `nlptool.tokenizers.Tokenizer`; it runs in the pipeline.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (with `seed`, reproducibly).
        seed: seed for shuffling.
        bucket_boundaries: "auto" (quantiles of the tokenised lengths of up to
            `sample_size` examples), a list of increasing lengths, or None for
            plain batching in order.
        sample_size: the first examples whose lengths choose "auto" boundaries.
        epoch: optional int64 tf.Variable holding the epoch about to run
            (`nlptool.training.epoch_variable()`); with it, each epoch's
            shuffling depends only on `seed` and the epoch, which makes
            resumed training exact.
        max_length: keep the first `max_length` ids of every example (after
            bucketing, which groups by the full length); None keeps all.

    Returns:
        A `tf.data.Dataset` of (ids (batch, length) int32, targets (batch,)).
        Every example appears exactly once per epoch. Its cardinality is
        known, so that Keras knows the epoch's length from the first epoch on.
    """
    texts = np.asarray(texts, dtype=object).astype(str)
    targets = np.asarray(targets)
    if len(texts) != len(targets):
        raise ValueError(f"Got {len(texts)} texts but {len(targets)} targets; they must be aligned.")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"Received an invalid value for argument `batch_size`, expected a positive integer, got {batch_size!r}."
        )
    if shuffle and epoch is not None:
        # each epoch's order is a pure function of (seed, epoch), read when the
        # epoch's iterator starts, so a resumed run sees the same order
        all_texts, all_targets = tf.constant(texts), tf.constant(targets)

        def one_epoch(_):
            # the variable is read here, inside the pipeline, each time an epoch starts
            seed_pair = tf.stack([tf.constant(seed or 0, tf.int64), tf.cast(epoch.read_value(), tf.int64)])
            order = tf.random.experimental.stateless_shuffle(tf.range(len(texts)), seed=seed_pair)
            return tf.data.Dataset.from_tensor_slices((tf.gather(all_texts, order), tf.gather(all_targets, order)))

        dataset = tf.data.Dataset.range(1).flat_map(one_epoch)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((texts, targets))
        if shuffle:
            dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)

    def finish(batches, count):
        if max_length is not None:
            batches = batches.map(lambda ids, target: (ids[:, :max_length], target))
        return batches.apply(tf.data.experimental.assert_cardinality(count)).prefetch(tf.data.AUTOTUNE)

    if bucket_boundaries is None:
        batches = dataset.batch(batch_size).map(
            lambda text, target: (tokenizer(text), target), num_parallel_calls=tf.data.AUTOTUNE
        )
        return finish(batches, -(-len(texts) // batch_size))

    if isinstance(bucket_boundaries, str) and bucket_boundaries != "auto":
        raise ValueError(
            "Received an invalid value for argument `bucket_boundaries`, expected 'auto', a list of "
            f"lengths or None, got {bucket_boundaries!r}."
        )
    lengths = token_counts(tokenizer, texts)  # tokenised once: the number of batches, and "auto" boundaries
    if isinstance(bucket_boundaries, str):  # "auto"
        bucket_boundaries = length_boundaries(lengths[:sample_size])

    def tokenize_one(text, target):
        return tokenizer(tf.reshape(text, [1]))[0], target  # (length,)

    batches = dataset.map(tokenize_one, num_parallel_calls=tf.data.AUTOTUNE).bucket_by_sequence_length(
        element_length_func=lambda ids, target: tf.shape(ids)[0],
        bucket_boundaries=list(bucket_boundaries),
        bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
        padded_shapes=([None], []),
    )
    return finish(batches, bucketed_batches(lengths, bucket_boundaries, batch_size))


def token_counts(tokenizer, texts, batch_size=4096):
    """The number of ids `tokenizer` gives each text, as an int array (no
    batch is padded: one huge text costs its own tokens, not a batch of them)."""
    counts = [
        tokenizer.lengths(tf.constant(texts[start : start + batch_size])).numpy().astype(np.int64)
        for start in range(0, len(texts), batch_size)
    ]
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def bucketed_batches(lengths, boundaries, batch_size):
    """How many batches `bucket_by_sequence_length` makes of examples of
    these `lengths`: bucket i holds the lengths in [boundaries[i-1],
    boundaries[i]), and each bucket ends with one smaller batch."""
    buckets = np.searchsorted(np.asarray(boundaries), np.asarray(lengths), side="right")
    sizes = np.bincount(buckets, minlength=len(boundaries) + 1)
    return int(sum(-(-int(size) // batch_size) for size in sizes))
