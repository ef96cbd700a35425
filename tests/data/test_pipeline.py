"""tf.data pipelines: every example once, aligned targets, less padding, reproducible."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from nlptool.data.pipeline import length_boundaries, make_dataset
from nlptool.tokenizers import WordTokenizer

RNG = np.random.default_rng(0)
LENGTHS = RNG.integers(1, 61, size=600)
TEXTS = [" ".join(["w"] * n) for n in LENGTHS]
TARGETS = np.arange(len(TEXTS))  # a unique target per example, to follow it through
TOKENIZER = WordTokenizer().train(["w"])


def epoch(dataset):
    return [(ids.numpy(), targets.numpy()) for ids, targets in dataset]


@pytest.mark.parametrize("buckets", ["auto", None, [10, 20, 40]])
def test_every_example_once_with_its_own_target(buckets):
    batches = epoch(make_dataset(TEXTS, TARGETS, TOKENIZER, batch_size=32, seed=1, bucket_boundaries=buckets))
    seen = np.concatenate([t for _, t in batches])
    assert sorted(seen.tolist()) == TARGETS.tolist()
    for ids, targets in batches:
        # the number of real tokens in each row is the length of its own text
        np.testing.assert_array_equal(np.count_nonzero(ids, axis=1), LENGTHS[targets])
        assert len(targets) <= 32


def test_bucketing_cuts_padding():
    def padded_cells(buckets):
        batches = epoch(make_dataset(TEXTS, TARGETS, TOKENIZER, batch_size=32, seed=1, bucket_boundaries=buckets))
        return sum(ids.size for ids, _ in batches)

    real = int(LENGTHS.sum())
    plain, bucketed = padded_cells(None), padded_cells("auto")
    assert bucketed - real < 0.25 * (plain - real)  # most of the padding is gone


def test_same_seed_same_order_other_seed_other_order():
    def order(seed):
        return np.concatenate([t for _, t in epoch(make_dataset(TEXTS, TARGETS, TOKENIZER, 32, seed=seed))]).tolist()

    assert order(5) == order(5)
    assert order(5) != order(6)


def test_length_boundaries_are_quantiles():
    assert length_boundaries(list(range(1, 101)), buckets=4) == [26, 51, 76]
    assert length_boundaries([7] * 50, buckets=4) == [8]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="3 texts but 2 targets"):
        make_dataset(["a", "b", "c"], [0, 1], TOKENIZER, 2)
    with pytest.raises(ValueError, match="argument `batch_size`"):
        make_dataset(["a"], [0], TOKENIZER, 0)
    with pytest.raises(ValueError, match="argument `bucket_boundaries`"):
        make_dataset(["a"], [0], TOKENIZER, 1, bucket_boundaries="quantiles")


def test_epoch_variable_fixes_each_epochs_order():
    import tensorflow as tf

    counter = tf.Variable(0, dtype=tf.int64)
    dataset = make_dataset(TEXTS, TARGETS, TOKENIZER, 32, seed=3, epoch=counter)

    def order():
        return np.concatenate([t for _, t in epoch(dataset)]).tolist()

    first = order()
    assert first == order()  # same epoch number, same order: nothing hidden advanced
    counter.assign(1)
    second = order()
    assert second != first and sorted(second) == TARGETS.tolist()
    counter.assign(0)
    assert order() == first


@pytest.mark.parametrize("buckets", ["auto", None, [10, 20, 40]])
@pytest.mark.parametrize("batch_size", [1, 7, 32, 1000])
def test_the_declared_number_of_batches_is_the_number_made(buckets, batch_size):
    # Keras reads the epoch's length from the cardinality: a wrong one cuts an epoch short or warns
    # "Your input ran out of data" (as every first epoch did while it was unknown)
    dataset = make_dataset(TEXTS, TARGETS, TOKENIZER, batch_size=batch_size, seed=1, bucket_boundaries=buckets)
    assert int(dataset.cardinality()) == len(epoch(dataset))


def test_truncation_keeps_the_first_ids_after_bucketing_by_the_full_length():
    short = epoch(make_dataset(TEXTS, TARGETS, TOKENIZER, batch_size=16, seed=1, max_length=5))
    full = epoch(make_dataset(TEXTS, TARGETS, TOKENIZER, batch_size=16, seed=1))
    assert len(short) == len(full)
    for (ids, targets), (full_ids, full_targets) in zip(short, full):
        np.testing.assert_array_equal(targets, full_targets)  # the same batches: grouped by the full length
        np.testing.assert_array_equal(ids, full_ids[:, :5])


def test_a_first_epoch_ends_without_keras_warning_of_missing_data(recwarn):
    import keras

    model = keras.Sequential(
        [keras.layers.Embedding(10, 2), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    targets = np.zeros(len(TEXTS), "float32")
    model.fit(make_dataset(TEXTS, targets, TOKENIZER, batch_size=64, seed=1), epochs=1, verbose=0)
    assert not [w for w in recwarn if "ran out of data" in str(w.message)]


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_pair_batches_declare_their_number(batch_size):
    import pandas as pd

    from nlptool.data.pairs import pair_dataset

    pairs = pd.DataFrame({"source": TEXTS[:200], "target": TEXTS[200:400]})
    dataset = pair_dataset(TOKENIZER, TOKENIZER, pairs, batch_size)
    batches = list(dataset)
    assert int(dataset.cardinality()) == len(batches)
    assert sum(int(target.shape[0]) for _, target in batches) == 200
