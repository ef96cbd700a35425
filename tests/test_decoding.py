"""nlptool.decoding: sampling and beam search against models whose probabilities are known.

The step functions here are Markov chains (the next-token distribution is a
fixed row of a transition matrix, chosen by the previous token) or a small
model whose state is the running sum of the tokens fed so far, so sampling
frequencies and beam-search results can be checked against exact numbers and
against brute-force enumeration of every hypothesis.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from nlptool.decoding import beam_search, filter_logits, greedy, sample, tile_beams
from nlptool.tokenizers.base import END_ID, PAD_ID, START_ID

# === Known models ===


def transition_matrix(seed, vocab):
    """Random next-token probabilities [vocab, vocab]; pad and <s> are never emitted."""
    rng = np.random.default_rng(seed)
    probs = np.zeros((vocab, vocab))
    emitted = [t for t in range(vocab) if t not in (PAD_ID, START_ID)]
    probs[:, emitted] = rng.dirichlet(np.ones(len(emitted)), size=vocab)
    return probs


def log(probs):
    with np.errstate(divide="ignore"):
        return np.log(probs)


class Markov:
    """step_fn(tokens, state) -> (log probs[tokens], state); counts its calls (in eager mode, one per step)."""

    def __init__(self, probs):
        self.probs = probs
        self.log_probs = tf.constant(log(probs), tf.float32)
        self.calls = 0

    def __call__(self, tokens, state):
        self.calls += 1
        return tf.gather(self.log_probs, tokens), state


P8 = transition_matrix(0, 8)  # for sampling
P5 = transition_matrix(1, 5)  # for beam search: tokens 1 and 4 continue, 3 ends


def starts(batch, token=START_ID):
    return tf.fill([batch], token)


def dummy_state(batch):
    return tf.zeros([batch, 1])


def previous_tokens(start_tokens, tokens):
    """The token each generated token was conditioned on, [B, T]."""
    return np.concatenate([np.asarray(start_tokens)[:, None], tokens[:, :-1]], axis=1)


def frequencies(tokens, vocab):
    return np.bincount(tokens.ravel(), minlength=vocab) / tokens.size


def test_the_sampling_model_has_no_near_ties():
    """The support tests below need clear gaps between the probabilities of a row."""
    gaps = np.diff(np.sort(P8[:, P8[0] > 0], axis=1), axis=1)
    assert gaps.min() > 1e-3


# === filter_logits ===


def test_filter_logits_top_k_then_nucleus_of_the_renormalised_rest():
    logits = tf.constant(np.log([[0.5, 0.3, 0.15, 0.05]]), tf.float32)

    def kept(**kwargs):
        return np.flatnonzero(np.isfinite(filter_logits(logits, **kwargs).numpy()[0])).tolist()

    assert kept() == [0, 1, 2, 3]
    assert kept(top_k=2) == [0, 1]
    assert kept(top_k=0) == kept(top_k=-1) == kept(top_k=4) == kept(top_k=9) == [0, 1, 2, 3]
    # mass before each token: 0, .5, .8, .95
    assert kept(top_p=0.82) == [0, 1, 2]
    assert kept(top_p=0.78) == [0, 1]  # .5 + .3 already reaches .78
    assert kept(top_p=0.45) == [0]
    assert kept(top_p=0.0) == kept(top_k=1) == [0]  # the most probable token always stays
    # after top-3 the masses before are 0, .526, .842: .82 now needs only two tokens
    assert kept(top_k=3, top_p=0.82) == [0, 1]
    # runtime (tensor) k and p in a graph
    run = tf.function(lambda k, p: filter_logits(logits, top_k=k, top_p=p))
    assert np.isfinite(run(tf.constant(3), tf.constant(1.0)).numpy()[0]).tolist() == [True, True, True, False]
    assert np.isfinite(run(tf.constant(0), tf.constant(0.82)).numpy()[0]).tolist() == [True, True, True, False]
    assert np.isfinite(run(tf.constant(3), tf.constant(0.82)).numpy()[0]).tolist() == [True, True, False, False]


# === Sampling ===


@pytest.mark.parametrize("top_k", [2, 3])
def test_top_k_emits_only_the_k_most_probable_tokens_with_renormalised_probabilities(top_k):
    batch = 20_000
    start = starts(batch)
    tokens, _ = sample(Markov(P8), dummy_state(batch), start, 3, top_k=top_k, seed=11, end_id=None)
    tokens = tokens.numpy()
    prev = previous_tokens(start, tokens)
    chosen = P8[prev, tokens]
    more_probable = (P8[prev] > chosen[..., None]).sum(-1)  # rank of each emitted token in its row
    assert more_probable.max() == top_k - 1  # within the top k, and the k-th does occur

    expected = np.where(P8[START_ID] >= np.sort(P8[START_ID])[-top_k], P8[START_ID], 0.0)
    expected /= expected.sum()
    np.testing.assert_allclose(frequencies(tokens[:, 0], 8), expected, atol=0.02)


@pytest.mark.parametrize("top_p", [0.5, 0.8])
def test_top_p_emits_only_the_smallest_set_reaching_p_with_renormalised_probabilities(top_p):
    order = np.argsort(-P8, axis=1)
    mass_before = np.cumsum(np.take_along_axis(P8, order, 1), axis=1) - np.take_along_axis(P8, order, 1)
    assert np.abs(mass_before - top_p).min() > 2e-3  # no row sits on the boundary

    batch = 20_000
    start = starts(batch)
    tokens, _ = sample(Markov(P8), dummy_state(batch), start, 3, top_p=top_p, seed=12, end_id=None)
    tokens = tokens.numpy()
    prev = previous_tokens(start, tokens)
    chosen = P8[prev, tokens]
    mass_above = np.where(P8[prev] > chosen[..., None], P8[prev], 0.0).sum(-1)
    assert (mass_above < top_p).all()

    row = P8[START_ID]
    in_nucleus = np.array([row[row > p].sum() < top_p for p in row]) & (row > 0)
    expected = np.where(in_nucleus, row, 0.0) / row[in_nucleus].sum()
    np.testing.assert_allclose(frequencies(tokens[:, 0], 8), expected, atol=0.02)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_frequencies_match_the_model(temperature):
    """Step 0 follows softmax(log p / T); the pair (y0, y1) follows the chain."""
    batch = 20_000
    tokens, lengths = sample(
        Markov(P8), dummy_state(batch), starts(batch), 2, temperature=temperature, seed=3, end_id=None
    )
    tokens = tokens.numpy()
    assert (lengths.numpy() == 2).all()
    tempered = P8[START_ID] ** (1 / temperature)
    np.testing.assert_allclose(frequencies(tokens[:, 0], 8), tempered / tempered.sum(), atol=0.02)
    if temperature == 1.0:
        pairs = np.bincount(tokens[:, 0] * 8 + tokens[:, 1], minlength=64).reshape(8, 8) / batch
        np.testing.assert_allclose(pairs, P8[START_ID][:, None] * P8, atol=0.015)


def greedy_path(probs, start, steps):
    path, prev = [], start
    for _ in range(steps):
        prev = int(np.argmax(probs[prev]))
        path.append(prev)
    return path


def test_top_k_1_tiny_temperature_and_zero_temperature_are_greedy():
    start = tf.constant([2, 1, 3, 4, 5, 6, 7])
    state = dummy_state(7)
    expected = np.array([greedy_path(P8, s, 6) for s in start.numpy()])

    def run(**kwargs):
        return sample(Markov(P8), state, start, 6, end_id=None, seed=5, **kwargs)[0].numpy()

    np.testing.assert_array_equal(run(greedy=True), expected)
    np.testing.assert_array_equal(greedy(Markov(P8), state, start, 6, end_id=None)[0].numpy(), expected)
    np.testing.assert_array_equal(run(top_k=1), expected)
    np.testing.assert_array_equal(run(temperature=1e-3), expected)
    np.testing.assert_array_equal(run(temperature=tf.constant(0.0)), expected)
    np.testing.assert_array_equal(run(greedy=tf.constant(True)), expected)
    assert not np.array_equal(run(), expected)  # plain sampling does differ


SAMPLE_SIGNATURE = [
    tf.TensorSpec([None], tf.int32, name="start"),
    tf.TensorSpec([], tf.int32, name="max_new_tokens"),
    tf.TensorSpec([], tf.float32, name="temperature"),
    tf.TensorSpec([], tf.int32, name="top_k"),
    tf.TensorSpec([], tf.float32, name="top_p"),
    tf.TensorSpec([], tf.int64, name="seed"),
]
SAMPLE_PARAMS = dict(temperature=0.9, top_k=5, top_p=0.95)


def test_a_seed_gives_the_same_tokens_eagerly_and_in_a_graph_and_another_seed_does_not():
    start = tf.constant([2, 2, 4, 5] * 16)
    state = dummy_state(64)
    first = sample(Markov(P8), state, start, 8, seed=123, end_id=None, **SAMPLE_PARAMS)[0].numpy()
    again = sample(Markov(P8), state, start, 8, seed=123, end_id=None, **SAMPLE_PARAMS)[0].numpy()
    other = sample(Markov(P8), state, start, 8, seed=124, end_id=None, **SAMPLE_PARAMS)[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.2

    model = Markov(P8)

    @tf.function(input_signature=SAMPLE_SIGNATURE)
    def generate(start, max_new_tokens, temperature, top_k, top_p, seed):
        state = tf.zeros([tf.shape(start)[0], 1])
        return sample(
            model, state, start, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, end_id=-1
        )

    in_graph = generate(start, 8, 0.9, 5, 0.95, 123)[0].numpy()
    np.testing.assert_array_equal(in_graph, first)


# === End token ===


def test_rows_stop_at_the_end_token_and_are_padded_after_it():
    batch, steps = 1000, 12
    tokens, lengths = sample(Markov(P8), dummy_state(batch), starts(batch), steps, seed=9)
    tokens, lengths = tokens.numpy(), lengths.numpy()
    assert tokens.shape == (batch, steps)
    is_end = tokens == END_ID
    ended = is_end.any(axis=1)
    assert 0 < ended.sum() < batch  # both kinds of rows occur
    first_end = np.where(ended, is_end.argmax(axis=1), steps)
    position = np.arange(steps)
    np.testing.assert_array_equal(lengths, np.minimum(first_end + 1, steps))
    np.testing.assert_array_equal(tokens == PAD_ID, position >= lengths[:, None])  # pad exactly after the end
    assert is_end.sum(axis=1).max() == 1  # nothing after the first end


def chain(vocab, path):
    """Deterministic transitions: start -> path[0] -> path[1] -> ...; anything else -> end."""
    probs = np.full((vocab, vocab), 1e-3)
    probs[:, END_ID] = 1.0
    for prev, nxt in zip([START_ID] + path[:-1], path):
        probs[prev] = 1e-3
        probs[prev, nxt] = 1.0
    probs[:, [PAD_ID, START_ID]] = 0.0
    return probs / probs.sum(axis=1, keepdims=True)


def test_the_loop_stops_once_every_row_has_ended_and_keeps_its_shape():
    model = Markov(chain(6, [4, 5, END_ID]))
    tokens, lengths = greedy(model, dummy_state(3), starts(3), 10)
    assert model.calls == 3
    np.testing.assert_array_equal(tokens.numpy(), [[4, 5, END_ID] + [0] * 7] * 3)
    np.testing.assert_array_equal(lengths.numpy(), [3, 3, 3])

    model = Markov(chain(6, [4, 5, END_ID]))
    tokens, lengths = greedy(model, dummy_state(3), starts(3), 10, end_id=None)
    assert model.calls == 10
    assert (tokens.numpy() != PAD_ID).all() and (lengths.numpy() == 10).all()

    model = Markov(chain(6, [4, 5, END_ID]))
    tokens, scores, lengths = beam_search(model, dummy_state(3), starts(3), 2, 10)
    assert model.calls < 10  # the runner-up beam ends soon too
    assert tokens.shape == (3, 1, 10)
    np.testing.assert_array_equal(tokens.numpy()[:, 0], [[4, 5, END_ID] + [0] * 7] * 3)
    np.testing.assert_array_equal(lengths.numpy(), [[3]] * 3)


# === Beam search ===


def lp(length, alpha):
    return ((5 + length) / 6) ** alpha


def enumerate_hypotheses(log_probs_after, start, max_len, alpha):
    """Every hypothesis from `start`: those ending in </s> within max_len tokens and the unfinished ones
    of exactly max_len tokens, as {tuple(tokens): score}, score = sum log p / ((5 + |Y|) / 6) ** alpha.
    `log_probs_after(prefix)` gives the next-token log-probabilities after the fed tokens `prefix`."""
    found = {}

    def extend(prefix, total):
        for token, token_log_prob in enumerate(log_probs_after(prefix)):
            if np.isinf(token_log_prob):
                continue
            tokens = prefix[1:] + (token,)
            if token == END_ID or len(tokens) == max_len:
                found[tokens] = (total + token_log_prob) / lp(len(tokens), alpha)
            else:
                extend(prefix + (token,), total + token_log_prob)

    extend((start,), 0.0)
    return found


def markov_log_probs(probs):
    table = log(probs) - np.log(probs.sum(axis=1, keepdims=True))
    return lambda prefix: table[prefix[-1]]


def assert_beam_is_exact(tokens, scores, lengths, hypotheses, n_best):
    """Beam output of one sentence == the n_best best of `hypotheses`, in order. (A Markov chain has exact
    ties, e.g. 1 4 1 1 and 1 1 4 1, so tied hypotheses may come in either order.)"""
    assert len(hypotheses) > n_best
    best_scores = sorted(hypotheses.values(), reverse=True)[:n_best]
    np.testing.assert_allclose(scores, best_scores, atol=1e-5)
    returned = [tuple(tokens[rank, : lengths[rank]]) for rank in range(n_best)]
    assert len(set(returned)) == n_best
    for rank, sequence in enumerate(returned):
        assert scores[rank] == pytest.approx(hypotheses[sequence], abs=1e-5)
        assert (tokens[rank, lengths[rank] :] == PAD_ID).all()


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_a_wide_beam_finds_the_true_n_best(alpha):
    # P5 continues with tokens 1 and 4 or ends with 3: 1 + 2 + 4 + 8 + 16 = 31 hypotheses of <= 4 tokens
    start = [START_ID, 1, 4]
    tokens, scores, lengths = beam_search(
        Markov(P5), dummy_state(3), tf.constant(start), 32, 4, length_penalty=alpha, n_best=6
    )
    assert tokens.shape == (3, 6, 4) and scores.shape == (3, 6) and lengths.shape == (3, 6)
    for row, first in enumerate(start):
        hypotheses = enumerate_hypotheses(markov_log_probs(P5), first, 4, alpha)
        assert len(hypotheses) == 31
        assert_beam_is_exact(tokens.numpy()[row], scores.numpy()[row], lengths.numpy()[row], hypotheses, 6)


@pytest.mark.parametrize("width", [2, 3])
def test_a_narrow_beam_returns_real_hypotheses_with_their_scores(width):
    hypotheses = enumerate_hypotheses(markov_log_probs(P5), START_ID, 4, 0.6)
    tokens, scores, lengths = beam_search(Markov(P5), dummy_state(1), starts(1), width, 4, length_penalty=0.6, n_best=2)
    for rank in range(2):
        sequence = tuple(tokens.numpy()[0, rank, : lengths.numpy()[0, rank]])
        assert scores.numpy()[0, rank] == pytest.approx(hypotheses[sequence], abs=1e-5)
    assert scores.numpy()[0, 0] >= scores.numpy()[0, 1]
    assert scores.numpy()[0, 0] <= max(hypotheses.values()) + 1e-6


def test_the_length_penalty_can_change_the_winner():
    probs = np.zeros((5, 5))
    probs[:, [1, 3, 4]] = [0.3, 0.3, 0.4]  # rows reached only after the end (or never)
    probs[START_ID, [1, 3, 4]] = [0.02, 0.50, 0.48]
    probs[4, [1, 3, 4]] = [0.015, 0.975, 0.01]
    probs[1, [1, 3, 4]] = [0.25, 0.35, 0.40]
    winners = {}
    for alpha in (0.0, 1.0):
        hypotheses = enumerate_hypotheses(markov_log_probs(probs), START_ID, 4, alpha)
        tokens, scores, lengths = beam_search(
            Markov(probs), dummy_state(1), starts(1), 32, 4, length_penalty=alpha, n_best=3
        )
        assert_beam_is_exact(tokens.numpy()[0], scores.numpy()[0], lengths.numpy()[0], hypotheses, 3)
        winners[alpha] = tuple(tokens.numpy()[0, 0, : lengths.numpy()[0, 0]]), scores.numpy()[0, 0]

    # </s> alone: log .5 ; "4 </s>": log(.48 * .975) = -0.759, divided by ((5 + 2) / 6) ** 1
    assert winners[0.0][0] == (END_ID,)
    assert winners[0.0][1] == pytest.approx(np.log(0.5), abs=1e-6)
    assert winners[1.0][0] == (4, END_ID)
    assert winners[1.0][1] == pytest.approx(np.log(0.48 * 0.975) / (7 / 6), abs=1e-6)


def test_every_returned_score_is_the_gnmt_formula_of_its_tokens():
    alpha = 0.8
    tokens, scores, lengths = beam_search(
        Markov(P8), dummy_state(2), tf.constant([2, 5]), 5, 6, length_penalty=alpha, n_best=5
    )
    for row, first in enumerate([2, 5]):
        for rank in range(5):
            sequence = tokens.numpy()[row, rank, : lengths.numpy()[row, rank]]
            assert sequence[-1] == END_ID or len(sequence) == 6
            log_prob = np.log(P8[np.concatenate([[first], sequence[:-1]]), sequence]).sum()
            expected = log_prob / ((5 + len(sequence)) / 6) ** alpha
            assert scores.numpy()[row, rank] == pytest.approx(expected, abs=1e-5)


def test_greedy_equals_a_beam_of_width_one():
    start = tf.constant([2, 1, 3, 4, 5, 6, 7])
    state = dummy_state(7)
    expected, expected_lengths = greedy(Markov(P8), state, start, 9)
    for alpha in (0.0, 0.7):
        tokens, scores, lengths = beam_search(Markov(P8), state, start, 1, 9, length_penalty=alpha)
        np.testing.assert_array_equal(tokens.numpy()[:, 0], expected.numpy())
        np.testing.assert_array_equal(lengths.numpy()[:, 0], expected_lengths.numpy())
        for row, first in enumerate(start.numpy()):
            sequence = expected.numpy()[row, : expected_lengths.numpy()[row]]
            log_prob = np.log(P8[np.concatenate([[first], sequence[:-1]]), sequence]).sum()
            assert scores.numpy()[row, 0] == pytest.approx(log_prob / lp(len(sequence), alpha), abs=1e-5)


def test_per_sentence_max_length():
    limits = [1, 3, 4, 2]
    tokens, scores, lengths = beam_search(
        Markov(P5), dummy_state(4), starts(4), 32, tf.constant(limits), length_penalty=0.6, n_best=2
    )
    assert tokens.shape == (4, 2, 4)
    for row, limit in enumerate(limits):
        assert (tokens.numpy()[row, :, limit:] == PAD_ID).all()
        assert (lengths.numpy()[row] <= limit).all()
        hypotheses = enumerate_hypotheses(markov_log_probs(P5), START_ID, limit, 0.6)
        assert_beam_is_exact(tokens.numpy()[row], scores.numpy()[row], lengths.numpy()[row], hypotheses, 2)

    tokens, _, lengths = beam_search(Markov(P5), dummy_state(2), starts(2), 3, tf.constant(3), n_best=3)
    assert tokens.shape == (2, 3, 3) and lengths.numpy().max() <= 3


def test_tile_beams_repeats_each_row_consecutively():
    tiled = tile_beams((tf.constant([[1, 2], [3, 4]]), tf.constant([7, 8])), 3)
    np.testing.assert_array_equal(tiled[0].numpy(), [[1, 2]] * 3 + [[3, 4]] * 3)
    np.testing.assert_array_equal(tiled[1].numpy(), [7, 7, 7, 8, 8, 8])


def test_beam_search_reorders_a_nested_state_with_its_beams():
    """Next-token distribution from the running sum of the fed tokens (state) and per-sentence constants:
    a bias carried in the state and a scale the step function closes over, tiled with tile_beams."""
    rng = np.random.default_rng(4)
    vocab, width, batch = 5, 32, 3
    table = np.zeros((3, vocab))
    table[:, [1, 3, 4]] = rng.dirichlet(np.ones(3), size=3)
    log_table = log(table)
    bias = np.zeros((batch, vocab))
    bias[:, [1, 3, 4]] = rng.normal(size=(batch, 3))
    scale = np.array([1.0, 2.0, 0.5])

    scale_beams = tile_beams(tf.constant(scale, tf.float32), width)
    log_table_tensor = tf.constant(log_table, tf.float32)

    def step_fn(tokens, state):
        running_sum, sentence_bias = state
        assert tokens.shape[0] == batch * width
        running_sum += tokens
        logits = tf.gather(log_table_tensor, running_sum % 3) * scale_beams[:, None] + sentence_bias
        return logits, (running_sum, sentence_bias)

    state = (tf.zeros([batch], tf.int32), tf.constant(bias, tf.float32))
    start = [START_ID, 1, 4]
    tokens, scores, lengths = beam_search(step_fn, state, tf.constant(start), width, 4, length_penalty=0.3, n_best=5)

    for row, first in enumerate(start):

        def log_probs_after(prefix, row=row):
            logits = log_table[sum(prefix) % 3] * scale[row] + bias[row]
            return logits - np.log(np.exp(logits).sum())

        hypotheses = enumerate_hypotheses(log_probs_after, first, 4, 0.3)
        assert_beam_is_exact(tokens.numpy()[row], scores.numpy()[row], lengths.numpy()[row], hypotheses, 5)


def test_n_best_cannot_exceed_the_beam_width():
    with pytest.raises(ValueError, match="n_best"):
        beam_search(Markov(P5), dummy_state(1), starts(1), 2, 4, n_best=3)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(Markov(P5), dummy_state(1), starts(1), 0, 4)


# === Graphs and SavedModels ===


class Generator(tf.Module):
    def __init__(self, probs):
        super().__init__()
        self.log_probs = tf.Variable(log(probs), dtype=tf.float32, trainable=False)

    def step(self, tokens, state):
        return tf.gather(self.log_probs, tokens), state

    @tf.function(input_signature=SAMPLE_SIGNATURE)
    def generate(self, start, max_new_tokens, temperature, top_k, top_p, seed):
        tokens, lengths = sample(
            self.step,
            tf.zeros_like(start),
            start,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )
        return {"tokens": tokens, "lengths": lengths}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="start"),
            tf.TensorSpec([None], tf.int32, name="max_length"),
            tf.TensorSpec([], tf.float32, name="length_penalty"),
        ]
    )
    def search(self, start, max_length, length_penalty):
        tokens, scores, lengths = beam_search(
            self.step, tf.zeros_like(start), start, 4, max_length, length_penalty=length_penalty, n_best=2
        )
        return {"tokens": tokens, "scores": scores, "lengths": lengths}


def test_sampling_and_beam_search_survive_a_saved_model(tmp_path):
    generator = Generator(P8)
    tf.saved_model.save(generator, str(tmp_path / "generator"))
    loaded = tf.saved_model.load(str(tmp_path / "generator"))

    start = tf.constant([2, 4, 6])
    eager_tokens, eager_lengths = sample(Markov(P8), dummy_state(3), start, 7, seed=42, **SAMPLE_PARAMS)
    for module in (generator, loaded):
        out = module.generate(start, 7, 0.9, 5, 0.95, tf.constant(42, tf.int64))
        np.testing.assert_array_equal(out["tokens"].numpy(), eager_tokens.numpy())
        np.testing.assert_array_equal(out["lengths"].numpy(), eager_lengths.numpy())
    assert loaded.generate(tf.fill([5], 2), 3, 1.0, 0, 1.0, tf.constant(1, tf.int64))["tokens"].shape == (5, 3)

    limits = tf.constant([2, 5, 4])
    tokens, scores, lengths = beam_search(Markov(P8), dummy_state(3), start, 4, limits, length_penalty=0.6, n_best=2)
    for module in (generator, loaded):
        out = module.search(start, limits, 0.6)
        np.testing.assert_array_equal(out["tokens"].numpy(), tokens.numpy())
        np.testing.assert_allclose(out["scores"].numpy(), scores.numpy(), atol=1e-6)
        np.testing.assert_array_equal(out["lengths"].numpy(), lengths.numpy())
    assert loaded.search(tf.fill([5], 2), tf.fill([5], 3), 0.0)["tokens"].shape == (5, 2, 3)


def test_zero_steps_and_empty_batches_keep_their_shapes():
    tokens, lengths = sample(Markov(P8), dummy_state(3), starts(3), 0)
    assert tokens.shape == (3, 0) and lengths.numpy().tolist() == [0, 0, 0]
    tokens, scores, lengths = beam_search(Markov(P8), dummy_state(2), starts(2), 3, 0, n_best=2)
    assert tokens.shape == (2, 2, 0) and scores.numpy()[:, 0].tolist() == [0.0, 0.0]

    generator = Generator(P8)
    assert generator.generate(starts(0), 4, 1.0, 0, 1.0, tf.constant(0, tf.int64))["tokens"].shape == (0, 4)
    assert generator.search(starts(0), tf.zeros([0], tf.int32), 0.0)["tokens"].shape == (0, 2, 0)


# === Options for long outputs: minimum length, n-gram blocking, a score penalty ===


def wide_beam_of_one(model, state, max_len, **options):
    """(tokens, scores, lengths) of the first sentence with a beam wide enough to be exhaustive."""
    tokens, scores, lengths = beam_search(model, state, starts(1), 64, max_len, n_best=5, **options)
    return tokens.numpy()[0], scores.numpy()[0], lengths.numpy()[0]


def test_min_length_keeps_the_end_token_back_until_the_hypothesis_is_long_enough():
    everything = enumerate_hypotheses(markov_log_probs(P5), START_ID, 5, 0.6)
    allowed = {seq: s for seq, s in everything.items() if seq[-1] != END_ID or len(seq) >= 3}
    assert len(allowed) < len(everything)  # P5 ends early often: the constraint removes hypotheses
    tokens, scores, lengths = wide_beam_of_one(Markov(P5), dummy_state(1), 5, length_penalty=0.6, min_length=3)
    assert_beam_is_exact(tokens, scores, lengths, allowed, 5)
    # per sentence, as a vector: the second sentence may end at once
    _, _, lengths = beam_search(Markov(P5), dummy_state(2), starts(2), 8, 5, min_length=tf.constant([4, 1]))
    assert lengths.numpy()[0].min() >= 4 and lengths.numpy()[1].min() < 4


def repeats(sequence, n):
    grams = [sequence[i : i + n] for i in range(len(sequence) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [2, 3])
def test_ngram_blocking_returns_the_best_hypotheses_without_a_repeated_ngram(n):
    everything = enumerate_hypotheses(markov_log_probs(P5), START_ID, 6, 0.0)
    allowed = {seq: s for seq, s in everything.items() if not repeats(seq, n)}
    assert len(allowed) < len(everything)
    tokens, scores, lengths = wide_beam_of_one(Markov(P5), dummy_state(1), 6, block_ngrams=n)
    assert_beam_is_exact(tokens, scores, lengths, allowed, 5)


def test_block_ngrams_must_be_at_least_two():
    with pytest.raises(ValueError, match="block_ngrams"):
        beam_search(Markov(P5), dummy_state(1), starts(1), 2, 4, block_ngrams=1)


class Counting(Markov):
    """A Markov chain whose state counts the fed tokens equal to 4."""

    def __call__(self, tokens, state):
        logits, _ = super().__call__(tokens, state)
        return logits, state + tf.cast(tf.equal(tokens, 4), tf.float32)[:, None]


def test_a_penalty_of_the_state_is_added_to_the_score_and_frozen_when_a_hypothesis_ends():
    weight = -0.7

    def penalty(state):
        return weight * state[:, 0]

    base = enumerate_hypotheses(markov_log_probs(P5), START_ID, 4, 0.6)
    # the state after the step that produced the last token counts the fed tokens: <s> and all but the last
    expected = {seq: s + weight * list(seq[:-1]).count(4) for seq, s in base.items()}
    assert sorted(expected.values())[-5:] != sorted(base.values())[-5:]
    tokens, scores, lengths = wide_beam_of_one(Counting(P5), dummy_state(1), 4, length_penalty=0.6, penalty_fn=penalty)
    assert_beam_is_exact(tokens, scores, lengths, expected, 5)
