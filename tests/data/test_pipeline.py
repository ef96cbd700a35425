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
