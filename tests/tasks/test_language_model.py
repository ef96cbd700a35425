"""Language model on tiny models: perplexity arithmetic, token streams,
truncated BPTT, evaluation files, generation, export in a fresh process,
the CLI, resuming, and the encoder transfer to sentiment."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import dataclasses
import io
import json
import math
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from nlptool import config as config_lib
from nlptool.cli import main
from nlptool.data.csv import LabeledData, LabelMap
from nlptool.tasks import language_model_steps as steps
from nlptool.tasks import sentiment, sentiment_steps
from nlptool.tasks.language_model import (
    LanguageModel,
    LanguageModelConfig,
    LanguageModelServing,
    build_model,
    stream_nll,
    stream_windows,
    window_dataset,
)
from nlptool.tokenizers import END_ID, PAD_ID, START_ID, UNK_ID

TRAIN = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "the mat and the log",
    "a dog sat",
    "the cat ran",
    "a <unk> word",
    "the dog ran",
    "a cat sat on a log",
    "the end",  # the last 5 % (one line): validation
]
TEST = ["the cat sat on the log", "a dog ran"]
TINY = [
    "model.units=12",
    "model.embedding_dim=8",  # != units: the tied softmax goes through a projection
    "model.layers=2",
    "model.dropout=0.1",
    "tokenizer.vocab_size=30",
    "training.batch_size=2",
    "training.window=5",
    "training.early_stopping_patience=5",
    "generation.max_new_tokens=8",
]


def lm_config(*overrides):
    return config_lib.resolve(LanguageModelConfig, [], [*TINY, *overrides])


def run_cli(args):
    """main(args) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return write_lines(root / "train.txt", TRAIN), write_lines(root / "test.txt", TEST)


@pytest.fixture(scope="module")
def cli_run(files, tmp_path_factory):
    """A 2-epoch word-level run trained by `nlptool train language-model`."""
    train_file, test_file = files
    run = tmp_path_factory.mktemp("cli") / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    code, out, err = run_cli(
        ["train", "language-model", "--text-file", train_file, "--test-file", test_file, *sets]
        + ["--epochs", "2", "--run-dir", run]
    )
    assert code == 0, err
    return run, out


@pytest.fixture(scope="module")
def exported(cli_run):
    """The run exported by `nlptool export`: (path, what it printed)."""
    out = cli_run[0].parent / "export"
    code, printed, err = run_cli(["export", cli_run[0], out])
    assert code == 0, err
    return out, printed


@pytest.fixture(scope="module")
def loaded(cli_run):
    return steps.load_run(cli_run[0])


# === 1. perplexity arithmetic on stand-in models of known probabilities ===


class TableModel:
    """A stand-in for LanguageModel: the next token's log-probabilities are
    log_table[before + 1, token], where `token` is the input and `before`
    the token before it in its column (the state carries it across windows;
    0 for none). A table that ignores `before` is a bigram model."""

    def __init__(self, log_table):
        self.log_table = tf.constant(log_table, tf.float32)

    def initial_states(self, batch_size):
        return [tf.zeros((batch_size,), tf.int32)]

    def __call__(self, ids, states=None, training=False):
        before = tf.concat([states[0][:, None], ids[:, :-1] + 1], axis=1)
        return tf.gather_nd(self.log_table, tf.stack([before, ids], axis=-1)), [ids[:, -1] + 1]


def random_log_table(vocabulary, rng, bigram):
    shape = (1 if bigram else vocabulary + 1, vocabulary, vocabulary)
    probabilities = rng.dirichlet(np.ones(vocabulary), size=shape[:2])
    return np.broadcast_to(np.log(probabilities), (vocabulary + 1, vocabulary, vocabulary))


def hand_nll(stream, batch_size, log_table):
    """Sum over every token but the first of -log P(token | previous token,
    the one before that if it lies in the same column of the layout)."""
    predicted = len(stream) - 1
    rows = math.ceil(predicted / batch_size)
    total = 0.0
    for p in range(predicted):
        before = stream[p - 1] + 1 if p % rows else 0  # the first input of a column has nothing before it
        total -= log_table[before, stream[p], stream[p + 1]]
    return total


STREAM = np.array([3, 4, 5, 6, 3, 7, 4, 8, 3, 3, 9, 5, 4, 3], np.int32)  # 13 tokens to predict
LAYOUTS = [(1, 13), (1, 2), (2, 3), (3, 2), (5, 4), (4, 1), (13, 1), (16, 5)]  # padded tails, empty columns


@pytest.mark.parametrize("bigram", [True, False])
def test_stream_nll_matches_a_hand_computation_for_every_layout(bigram):
    log_table = random_log_table(10, np.random.default_rng(0), bigram)
    model = TableModel(log_table)
    whole = -sum(log_table[0, a, b] for a, b in zip(STREAM[:-1], STREAM[1:]))
    for batch_size, window in LAYOUTS:
        total, tokens = stream_nll(model, STREAM, batch_size=batch_size, window=window)
        assert tokens == len(STREAM) - 1, (batch_size, window)
        expected = hand_nll(STREAM, batch_size, log_table)
        np.testing.assert_allclose(total, expected, rtol=1e-6, err_msg=str((batch_size, window)))
        if bigram:  # no context beyond the previous token: the layout does not matter
            np.testing.assert_allclose(total, whole, rtol=1e-6)


def test_stream_windows_predicts_every_token_but_the_first_once():
    inputs, targets = stream_windows(STREAM, batch_size=3)
    assert inputs.shape == targets.shape == (3, 5)
    np.testing.assert_array_equal(inputs.reshape(-1), list(STREAM[:-1]) + [PAD_ID, PAD_ID])
    np.testing.assert_array_equal(targets.reshape(-1), list(STREAM[1:]) + [PAD_ID, PAD_ID])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        stream_windows([3], 1)


def test_a_uniform_language_model_has_perplexity_equal_to_its_vocabulary_size():
    model = LanguageModel(13, 8, 8, layers=1, dropout=0.0)
    model.build()
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # all logits 0
    total, tokens = stream_nll(model, STREAM, batch_size=3, window=2)
    assert tokens == 13
    assert math.exp(total / tokens) == pytest.approx(13, rel=1e-6)


# === 2. token streams ===


def test_token_stream_follows_the_ptb_convention():
    config = lm_config()
    tokenizer = steps.make_tokenizer(config).train(["a b c", "a <unk> b", "c"])
    assert "<unk>" not in tokenizer.vocabulary  # a reserved token in the text keeps its reserved meaning
    a, b, c = (tokenizer.vocabulary.index(w) + 4 for w in "abc")
    lines = ["a b", "", "c"]
    stream = steps.token_stream(tokenizer, lines, "line")
    assert stream.tolist() == [END_ID, a, b, END_ID, END_ID, c, END_ID]
    assert len(stream) == steps.word_count(lines, "line") + 1
    unknown = ["c <unk> zebra", "<unk>"]
    stream = steps.token_stream(tokenizer, unknown, "line")
    assert stream.tolist() == [END_ID, c, UNK_ID, UNK_ID, END_ID, UNK_ID, END_ID]
    assert len(stream) == steps.word_count(unknown, "line") + 1


def test_token_stream_does_not_depend_on_batching_or_chunking(monkeypatch):
    words = steps.make_tokenizer(lm_config()).train(TRAIN)
    chars = steps.make_tokenizer(lm_config("tokenizer.kind=char", "tokenizer.vocab_size=40")).train(["ab c\n"])
    lines = ["a b c", "", "ab c", "c a"]
    expected_words = steps.token_stream(words, lines, "line")
    expected_chars = steps.token_stream(chars, lines, "text")
    # "text": the text, newlines included, as characters after one </s>
    assert expected_chars.tolist() == [END_ID] + chars(["a b c\n\nab c\nc a\n"]).numpy()[0].tolist()
    assert chars.vocabulary.index("\n") + 4 in expected_chars
    monkeypatch.setattr(steps, "TOKENIZE_BATCH", 1)
    monkeypatch.setattr(steps, "CHUNK_CHARACTERS", 3)
    np.testing.assert_array_equal(steps.token_stream(words, lines, "line"), expected_words)
    np.testing.assert_array_equal(steps.token_stream(chars, lines, "text"), expected_chars)
    # pieces end at line ends, so a word tokeniser reading "text" never sees a word cut in two
    # (4 characters would cut "ab" of the third line)
    monkeypatch.setattr(steps, "CHUNK_CHARACTERS", 4)
    whole_text = [END_ID] + words(["\n".join(lines)]).numpy()[0].tolist()
    assert steps.token_stream(words, lines, "text").tolist() == whole_text


# === 3. truncated BPTT carries the state ===


def small_model():
    keras.utils.set_random_seed(3)
    model = LanguageModel(12, 8, 8, layers=2, dropout=0.0)
    model.build()
    # larger recurrent weights: the state (and so carrying it) matters more
    model.set_weights([w * 3 if w.ndim == 2 and w.shape[0] == 8 else w for w in model.get_weights()])
    return model


def full_pass(model, stream, batch_size):
    """(nll sum, tokens, final states) of one call over the whole layout, by numpy."""
    inputs, targets = stream_windows(stream, batch_size)
    logits, states = model(tf.constant(inputs))
    logits = logits.numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    valid = targets != PAD_ID
    return -chosen[valid].sum(), valid.sum(), [s.numpy() for s in states]


LONG_STREAM = np.random.default_rng(1).integers(3, 12, size=31).astype(np.int32)


def test_stream_nll_carries_the_state_across_windows():
    model = small_model()
    for batch_size, window in [(1, 2), (1, 30), (3, 4)]:
        reference, tokens, _ = full_pass(model, LONG_STREAM, batch_size)
        assert tokens == 30
        total, count = stream_nll(model, LONG_STREAM, batch_size, window)
        assert count == tokens
        np.testing.assert_allclose(total, reference, rtol=1e-4, err_msg=str((batch_size, window)))


def test_test_and_train_steps_carry_the_state_and_reset_it_at_the_first_window():
    model = small_model()
    batch_size, window = 2, 4
    reference, tokens, final_states = full_pass(model, LONG_STREAM, batch_size)
    model.carry_states(batch_size)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # fit changes nothing: it only measures
    dataset = window_dataset(LONG_STREAM, batch_size, window)
    assert dataset.cardinality().numpy() == 4  # 15 columns' rows in windows of 4
    first = model.evaluate(dataset, return_dict=True, verbose=0)
    assert first["perplexity"] == pytest.approx(math.exp(reference / tokens), rel=1e-5)
    for variable, state in zip(model._carried, final_states):
        np.testing.assert_allclose(variable.numpy(), state, atol=1e-6)
    # a second pass starts from zero again, not from the carried state
    second = model.evaluate(dataset, return_dict=True, verbose=0)
    assert second["perplexity"] == pytest.approx(first["perplexity"], rel=1e-6)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False).history
    assert history["perplexity"][0] == pytest.approx(first["perplexity"], rel=1e-5)
    with pytest.raises(RuntimeError, match="carry_states"):
        fresh = LanguageModel(12, 8, 8, layers=1)
        fresh.build()
        fresh.compile()
        fresh.evaluate(dataset, verbose=0)


def test_learning_rate_schedule_decays_after_the_start_epoch():
    config = lm_config("training.learning_rate=0.5", "training.lr_decay=0.1", "training.lr_decay_start=2")
    rate = steps.learning_rate_schedule(config)
    assert [rate(epoch) for epoch in range(4)] == pytest.approx([0.5, 0.5, 0.05, 0.005])


@pytest.mark.parametrize("value", ["0", "1", "1.5"])
def test_a_back_off_outside_zero_to_one_is_a_config_error(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*lr_backoff must be between 0 and 1"):
        lm_config(f"training.lr_backoff={value}")
    assert lm_config("training.lr_backoff=null").training.lr_backoff is None


def test_untied_softmax_is_a_dense_layer_over_the_gru_outputs():
    keras.utils.set_random_seed(5)
    model = LanguageModel(12, 6, 8, layers=1, tie_weights=False)
    model.build()
    outputs = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    kernel, bias = model.projection.kernel.numpy(), model.projection.bias.numpy()
    np.testing.assert_allclose(model.logits(tf.constant(outputs)).numpy(), outputs @ kernel + bias, atol=1e-5)


# --- sampled softmax ---

CYCLE = np.tile(np.arange(4, 40, dtype=np.int32), 30)  # every token determines the next


@pytest.mark.parametrize("tie_weights", [True, False])
def test_a_sampled_softmax_trains_the_model_that_the_full_softmax_evaluates(tie_weights):
    keras.utils.set_random_seed(0)
    model = LanguageModel(40, 16, 24, layers=1, tie_weights=tie_weights, softmax_samples=6)
    model.build()
    model.carry_states(4)
    model.compile(optimizer=keras.optimizers.Adam(0.03))
    dataset = window_dataset(CYCLE, 4, 10)
    before = model.evaluate(dataset, return_dict=True, verbose=0)["perplexity"]
    history = model.fit(dataset, validation_data=dataset, epochs=12, verbose=0, shuffle=False).history
    assert "perplexity" not in history  # the sampled loss is not the model's perplexity
    after = model.evaluate(dataset, return_dict=True, verbose=0)["perplexity"]
    # validation in fit scores the full softmax, as evaluate does
    assert history["val_perplexity"][-1] == pytest.approx(after, rel=1e-5)
    assert before > 30  # about the vocabulary size at the start
    assert after < 1.5  # 6 sampled words per step taught the full softmax the cycle


def test_log_uniform_draws_follow_their_expected_counts():
    model = LanguageModel(50, 4, 4, layers=1, softmax_samples=40, seed=2)
    model.build()
    targets = tf.constant([[0], [1], [9], [49]], tf.int64)
    draws = []
    for _ in range(300):
        sampled, target_counts, sampled_counts = model.log_uniform_samples(targets)
        draws.append(sampled.numpy())
    draws = np.concatenate(draws)
    assert draws.min() >= 0 and draws.max() <= 49
    probability = np.log((np.arange(50) + 2) / (np.arange(50) + 1)) / np.log(51)
    assert probability.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(target_counts.numpy()[:, 0], 40 * probability[[0, 1, 9, 49]], rtol=1e-5)
    np.testing.assert_allclose(sampled_counts.numpy(), 40 * probability[sampled.numpy()], rtol=1e-5)
    frequency = np.bincount(draws, minlength=50) / len(draws)  # 12,000 draws
    np.testing.assert_allclose(frequency[:5], probability[:5], atol=0.01)
    assert frequency[25:].sum() == pytest.approx(probability[25:].sum(), abs=0.01)


def test_sampled_softmax_loss_matches_a_hand_computation_and_ignores_padding():
    keras.utils.set_random_seed(1)
    model = LanguageModel(40, 8, 8, layers=1, softmax_samples=6)  # no dropout, no projection
    model.build()
    outputs = tf.random.normal((2, 5, 8))
    state = model.sampler_seed.state.numpy()
    sampled, _, sampled_counts = model.log_uniform_samples(tf.zeros((1, 1), tf.int64))
    sampled, sampled_counts = sampled.numpy(), sampled_counts.numpy().astype(np.float64)
    hit = int(sampled[0])  # a target that meets itself among the samples
    targets = tf.constant([[5, hit, 39, PAD_ID, PAD_ID], [hit, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    model.sampler_seed.state.assign(state)  # sampled_nll makes the same draws
    total, count = model.sampled_nll(outputs, targets)
    weights = model.embedding.embeddings.numpy().astype(np.float64)
    bias = model.output_bias.numpy().astype(np.float64)
    probability = np.log((np.arange(40) + 2) / (np.arange(40) + 1)) / np.log(41)
    reference = 0.0
    for (row, step), target in np.ndenumerate(targets.numpy()):
        if target == PAD_ID:
            continue
        h = outputs.numpy()[row, step].astype(np.float64)
        true_logit = weights[target] @ h + bias[target] - np.log(6 * probability[target])
        sampled_logits = weights[sampled] @ h + bias[sampled] - np.log(sampled_counts)
        sampled_logits = sampled_logits[sampled != target]  # a target drawn does not count against itself
        reference += np.logaddexp.reduce(np.append(sampled_logits, true_logit)) - true_logit
    assert float(count) == 4
    assert float(total) == pytest.approx(reference, rel=1e-4)
    assert [float(v) for v in model.sampled_nll(outputs, tf.zeros_like(targets))] == [0.0, 0.0]
    config = lm_config("training.softmax_samples=7")
    assert build_model(config, 30).get_config()["softmax_samples"] == 7
    with pytest.raises(ValueError, match="below the vocabulary size 30, got 30"):
        build_model(lm_config("training.softmax_samples=30"), 30)


# === 4. evaluation files ===


def fake_run(run, config, lines, zero=False):
    """A run directory written by hand (no training): config, tokeniser, weights."""
    tokenizer = steps.make_tokenizer(config).train(steps.training_texts(lines, config.tokenizer.unit))
    run.mkdir(parents=True)
    config_lib.save_yaml(config, run / steps.CONFIG_FILE)
    steps.save_tokenizer(tokenizer, run)
    keras.utils.set_random_seed(0)
    model = build_model(config, tokenizer.vocabulary_size())
    if zero:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    (run / "checkpoints").mkdir()
    model.save_weights(run / steps.training.CHECKPOINT)
    return tokenizer, model


@pytest.mark.parametrize("unit", ["text", "line"])
def test_evaluate_a_uniform_char_model(tmp_path, unit):
    config = lm_config("tokenizer.kind=char", "tokenizer.vocab_size=60", f"tokenizer.unit={unit}")
    tokenizer, _ = fake_run(tmp_path / "run", config, TRAIN, zero=True)
    vocabulary = tokenizer.vocabulary_size()
    assert vocabulary == 4 + len(set("".join(TRAIN)) | ({"\n"} if unit == "text" else set()))
    metrics = steps.evaluate(tmp_path / "run", TEST)
    assert metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    # every character and (line unit) every end of line is predicted once
    assert metrics["tokens"] == sum(len(line) + 1 for line in TEST)
    assert metrics["perplexity"] == pytest.approx(vocabulary, rel=1e-6)
    assert metrics["bits_per_character"] == pytest.approx(math.log2(vocabulary), rel=1e-6)
    if unit == "line":  # per word (PTB convention: words plus ends of lines)
        words = steps.word_count(TEST, "line")
        assert words == 6 + 1 + 3 + 1
        assert metrics["word_perplexity"] == pytest.approx(vocabulary ** (metrics["tokens"] / words), rel=1e-5)
    else:
        assert "word_perplexity" not in metrics


def test_evaluate_writes_the_stream_perplexity_of_a_random_char_model(tmp_path):
    config = lm_config("tokenizer.kind=char", "tokenizer.vocab_size=60", "tokenizer.unit=text")
    tokenizer, model = fake_run(tmp_path / "run", config, TRAIN)
    metrics = json.loads(json.dumps(steps.evaluate(tmp_path / "run", TEST)))
    stream = steps.token_stream(tokenizer, TEST, "text")
    nll, tokens = stream_nll(model, stream, batch_size=1, window=len(stream))
    assert metrics["tokens"] == tokens == len("\n".join(TEST)) + 1
    assert metrics["nll_per_token"] == pytest.approx(nll / tokens, rel=1e-4)
    assert metrics["bits_per_character"] == pytest.approx(metrics["nll_per_token"] / math.log(2), rel=1e-12)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll_per_token"]), rel=1e-12)
    assert metrics["split"] == "test" and set(metrics) == {
        "split",
        "tokens",
        "nll_per_token",
        "perplexity",
        "seconds",
        "bits_per_character",
    }


# === 5. generation ===


def generate(module, prompts, max_new_tokens=20, temperature=1.0, top_k=0, top_p=1.0, seed=0):
    out = module.generate(
        tf.constant(prompts),
        tf.constant(max_new_tokens, tf.int32),
        tf.constant(temperature, tf.float32),
        tf.constant(top_k, tf.int32),
        tf.constant(top_p, tf.float32),
        tf.constant(seed, tf.int64),
    )
    return [t.decode() for t in out["text"].numpy()], out["ids"].numpy(), out["lengths"].numpy()


PROMPTS = ["the cat", "a"]


@pytest.fixture(scope="module")
def endless(loaded):
    """The trained run's generation module, never stopping at </s>."""
    config, tokenizer, model = loaded
    return LanguageModelServing(tokenizer, model, dataclasses.replace(config.generation, stop_at_end=False))


def test_sampling_is_reproducible_by_seed(endless):
    texts, ids, lengths = generate(endless, PROMPTS, seed=5)
    again = generate(endless, PROMPTS, seed=5)
    assert texts == again[0]
    np.testing.assert_array_equal(ids, again[1])
    assert lengths.tolist() == [20, 20]  # no end token stops it
    samples = {tuple(generate(endless, PROMPTS, seed=seed)[1].reshape(-1)) for seed in range(4)}
    assert len(samples) == 4


def test_greedy_equals_beam_width_one_top_k_one_and_a_tiny_nucleus(endless, loaded):
    model = loaded[2]
    texts, ids, lengths = generate(endless, PROMPTS, temperature=0.0, seed=1)
    assert lengths.tolist() == [20, 20]
    # greedy by hand: argmax of the model's step, never <pad>, <s>, nor </s> when it would not stop
    states, last = endless.prompt_states(tf.constant(PROMPTS))
    for t in range(5):
        logits, states = model.step(last, states)
        logits = logits.numpy()
        logits[:, [PAD_ID, START_ID, END_ID]] = -np.inf
        last = tf.constant(logits.argmax(-1), tf.int32)
        np.testing.assert_array_equal(ids[:, t], last.numpy())
    for top_k, top_p in [(1, 1.0), (0, 1e-6)]:
        other = generate(endless, PROMPTS, temperature=1.0, top_k=top_k, top_p=top_p, seed=7)
        assert other[0] == texts
        np.testing.assert_array_equal(other[1], ids)
    beam = endless.beam_search(tf.constant(PROMPTS), tf.constant(20), tf.constant(1))
    assert [t.decode() for t in beam["text"].numpy()] == texts
    tokens, _ = endless.beam_ids(tf.constant(PROMPTS), 20, 1)
    np.testing.assert_array_equal(tokens.numpy(), ids)


def test_generated_ids_never_hold_pad_or_start(loaded):
    config, tokenizer, trained = loaded
    model = build_model(config, tokenizer.vocabulary_size())
    model.set_weights(trained.get_weights())
    bias = model.output_bias.numpy()
    bias[[PAD_ID, START_ID]] += 30.0  # without the ban, these would be nearly every token
    model.output_bias.assign(bias)
    module = LanguageModelServing(tokenizer, model, config.generation)
    for seed in range(3):
        texts, ids, lengths = generate(module, PROMPTS, seed=seed)
        for row, length in enumerate(lengths):
            assert length >= 1
            assert not np.isin(ids[row, :length], [PAD_ID, START_ID]).any(), ids[row]
            assert (ids[row, length:] == PAD_ID).all()
    _, greedy_ids, _ = generate(module, PROMPTS, temperature=0.0)
    assert not np.isin(greedy_ids[:, 0], [PAD_ID, START_ID]).any()


def test_prompt_context_follows_the_training_streams(loaded):
    _, tokenizer, model = loaded
    module = LanguageModelServing(tokenizer, model, loaded[0].generation)
    # in training, a line's first word always follows </s> (token_stream)
    stream = steps.token_stream(tokenizer, ["the cat"], "line")
    assert stream[0] == END_ID
    states, last = module.prompt_states(tf.constant(["the cat"]))
    _, expected = model(tf.constant([stream[:2]]))
    assert last.numpy()[0] == stream[2]
    for a, b in zip(states, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


# === 6. export, reloaded in a process that never imports nlptool ===


def test_export_in_a_fresh_process_generates_the_same_text(cli_run, exported):
    run, (out, _) = cli_run[0], exported
    prompts = ["the cat", "a dog sat", ""]
    sampled = steps.generate(run, prompts, max_new_tokens=10, temperature=1.0, top_k=5, seed=7)
    script = f"""
import json, sys, tensorflow as tf
loaded = tf.saved_model.load({str(out)!r})
generate = loaded.signatures["generate"]
prompts = tf.constant({prompts!r})
def sample(max_new_tokens, temperature, top_k, top_p, seed):
    return generate(prompt=prompts, max_new_tokens=tf.constant(max_new_tokens), temperature=tf.constant(temperature),
                    top_k=tf.constant(top_k), top_p=tf.constant(top_p), seed=tf.constant(seed, tf.int64))
text = lambda o: [t.decode() for t in o["text"].numpy()]
defaults = {{k: v.numpy().item() for k, v in loaded.signatures["generation_defaults"]().items()}}
default = loaded.signatures["serving_default"](prompt=prompts)
beam = loaded.signatures["beam_search"](prompt=prompts, max_new_tokens=tf.constant(6), beam_width=tf.constant(1))
assert "nlptool" not in sys.modules
print(json.dumps([
    text(sample(10, 1.0, 5, 1.0, 7)),
    sorted(default), text(default), text(sample(defaults["max_new_tokens"], defaults["temperature"],
                                                defaults["top_k"], defaults["top_p"], 0)),
    text(beam), text(sample(6, 0.0, 0, 1.0, 0)),
    defaults,
]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    texts, default_keys, default_texts, seed_0, beam, greedy, defaults = json.loads(
        done.stdout.strip().splitlines()[-1]
    )
    assert texts == sampled
    assert default_keys == ["text"] and default_texts == seed_0  # serving_default: the defaults, seed 0
    assert beam == greedy
    assert defaults == {"max_new_tokens": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert all(len(t.split()) <= 10 for t in texts)
    with pytest.raises(steps.export_lib.ExportError, match="already exists"):
        steps.export(run, out)
    assert (out / "saved_model.pb").is_file()


# === 7. training, resuming ===


def test_training_fills_the_run_directory(cli_run):
    run, out = cli_run
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert np.isfinite(history["val_perplexity"]).all() and (history["val_perplexity"] > 1).all()
    # perplexity is exp(loss), the mean nll per token
    np.testing.assert_allclose(history["perplexity"], np.exp(history["loss"]), rtol=1e-5)
    np.testing.assert_allclose(history["val_perplexity"], np.exp(history["val_loss"]), rtol=1e-5)
    # each epoch's rate: the schedule's, times the back-off for every earlier epoch that ended worse
    config = config_lib.resolve(LanguageModelConfig, [run / "config.yaml"])
    rate, expected, best, back_offs = steps.learning_rate_schedule(config), [], math.inf, 0
    for epoch, perplexity in enumerate(history["val_perplexity"]):
        expected.append(rate(epoch) * config.training.lr_backoff**back_offs)
        best, back_offs = (perplexity, back_offs) if perplexity < best else (best, back_offs + 1)
    assert history["learning_rate"].tolist() == pytest.approx(expected)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tokens"] == steps.word_count(TEST, "line") == 11
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll_per_token"]))
    assert f"{metrics['split']}: 11 tokens, perplexity {metrics['perplexity']:.2f}" in out
    assert json.loads((run / "training.json").read_text())["epochs"] == 2
    assert json.loads((run / "data.json").read_text())["task"] == "language-model"
    for name in ("config.yaml", "tokenizer.json", "checkpoints/best.weights.h5"):
        assert (run / name).is_file(), name


def test_resume_after_interruption_gives_the_uninterrupted_run(cli_run, files, tmp_path, interrupted_at_epoch):
    straight = cli_run[0]
    config = config_lib.resolve(LanguageModelConfig, [straight / "config.yaml"])
    assert config.model.dropout > 0  # the dropout masks must resume too
    corpus = steps.text_corpus(files[0], test_path=files[1])
    run = tmp_path / "run"
    with interrupted_at_epoch(1):
        steps.train(config, corpus, run, verbose=0)
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0]
    steps.train(config, corpus, run, verbose=0)
    resumed, reference = pd.read_csv(run / "history.csv"), pd.read_csv(straight / "history.csv")
    pd.testing.assert_frame_equal(resumed, reference)
    for a, b in zip(steps.load_run(run)[2].get_weights(), steps.load_run(straight)[2].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_sampled_softmax_run_resumes_to_the_uninterrupted_weights(files, tmp_path, interrupted_at_epoch):
    config = lm_config("training.softmax_samples=5", "training.epochs=2")
    corpus = steps.text_corpus(files[0], test_path=files[1])
    steps.train(config, corpus, tmp_path / "straight", verbose=0)
    with interrupted_at_epoch(1):
        steps.train(config, corpus, tmp_path / "run", verbose=0)
    steps.train(config, corpus, tmp_path / "run", verbose=0)
    resumed, reference = (
        pd.read_csv(tmp_path / "run" / "history.csv"),
        pd.read_csv(tmp_path / "straight" / "history.csv"),
    )
    pd.testing.assert_frame_equal(resumed, reference)  # the second epoch drew the same samples
    for a, b in zip(
        steps.load_run(tmp_path / "run")[2].get_weights(), steps.load_run(tmp_path / "straight")[2].get_weights()
    ):
        np.testing.assert_array_equal(a, b)


# === 8. the CLI ===


def test_cli_evaluate_generate_export(cli_run, exported, files):
    run, train_output = cli_run
    code, out, _ = run_cli(["evaluate", run])
    assert code == 0
    # the test file again, by default (named by its path rather than "test")
    assert out == f"{files[1]}: " + train_output.splitlines()[-1].split(": ", 1)[1] + "\n"
    code, out, _ = run_cli(["evaluate", run, "--text-file", files[0]])
    assert code == 0 and f": {steps.word_count(TRAIN, 'line')} tokens, perplexity" in out
    generate_args = ["the cat", "a", "--seed", "3", "--max-new-tokens", "6"]
    code, first, _ = run_cli(["generate", run, *generate_args])
    assert code == 0
    lines = first.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["the cat", "a"]
    assert all(len(line.split("\t")[1].split()) <= 6 for line in lines)
    assert run_cli(["generate", run, *generate_args])[1] == first
    export, printed = exported
    assert printed == f"wrote {export} (signatures: serving_default, generate, beam_search, generation_defaults)\n"
    assert run_cli(["generate", export, *generate_args])[1] == first
    assert run_cli(["generate", export, *generate_args[:3], "4", *generate_args[4:]])[1] != first  # --seed 4
    code, _, err = run_cli(["export", run, export])
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["generate", export, "a", "--beam-width", "0"])
    assert code == 2 and "beam width must be at least 1" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text-file", "missing.txt"], "missing.txt does not exist"),
        (["--text-file", "TRAIN", "--test-file", "nowhere.txt"], "nowhere.txt does not exist"),
        (["--csv", "TRAIN"], "--csv needs --text-column"),
        (["--text-file", "TRAIN", "--label-column", "x"], "are for sentiment runs"),
        (["--text-file", "TRAIN", "--set", "model.unitz=3"], "model.unitz"),
        (["--text-file", "EMPTY"], "holds no text"),
    ],
)
def test_cli_bad_input_leaves_no_run_directory(files, tmp_path, args, message):
    empty = write_lines(tmp_path / "empty.txt", ["", " "])
    args = [{"TRAIN": files[0], "EMPTY": empty}.get(a, a) for a in args]
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "language-model", *args, "--run-dir", run])
    assert code == 2
    assert message in err
    assert not run.exists()


# === 9. the language model's encoder in a sentiment model ===


def sentiment_config(**changes):
    overrides = ["model.units=4", "model.embedding_dim=4", "model.dropout=0.0", "training.batch_size=4"]
    return config_lib.resolve(sentiment.SentimentConfig, [], overrides + [f"{k}={v}" for k, v in changes.items()])


@pytest.mark.parametrize("bidirectional,layers", [(True, 2), (False, 3)])
def test_transfer_encoder_copies_embedding_and_matching_gru_layers(loaded, bidirectional, layers):
    lm_config_, tokenizer, lm = loaded
    config = sentiment_config(
        **{
            "model.units": lm_config_.model.units,
            "model.embedding_dim": lm_config_.model.embedding_dim,
            "model.bidirectional": bidirectional,
            "model.layers": layers,
        }
    )
    keras.utils.set_random_seed(0)
    model = sentiment.build_model(config, tokenizer.vocabulary_size(), 2)
    before = {w.path: w.numpy() for w in model.weights}
    transferred = sentiment_steps.transfer_encoder(lm, model)
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], lm.embedding.get_weights()[0])
    if bidirectional:
        targets = [model.get_layer("bidirectional_0").forward_layer]  # layer 0, forward only
    else:
        targets = [model.get_layer("gru_0"), model.get_layer("gru_1")]  # the LM's two layers
    assert transferred == ["embedding"] + [t.path for t in targets]
    for target, source in zip(targets, lm.grus):
        for a, b in zip(target.get_weights(), source.get_weights()):
            np.testing.assert_array_equal(a, b)
    changed = {t.path for t in targets} | {"embedding"}
    for weight in model.weights:  # everything else is untouched
        if not any(weight.path.startswith(p + "/") for p in changed):
            np.testing.assert_array_equal(weight.numpy(), before[weight.path], err_msg=weight.path)


def test_sentiment_training_starts_from_the_language_model(cli_run, loaded, tmp_path, monkeypatch):
    _, tokenizer, lm = loaded
    texts = ["the cat sat", "the dog ran", "a cat and a dog", "the end"] * 2
    train = pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 4})
    data = LabeledData(train, train, None, LabelMap.from_labels(train["label"]))
    fitted = []
    monkeypatch.setattr(keras.Model, "fit", lambda model, *a, **k: fitted.append(model))  # the model before training
    config = sentiment_config(**{"training.epochs": 1})
    model, tokenizer_used = sentiment_steps.train(
        config, data, tmp_path / "run", init_encoder_from=cli_run[0], verbose=0
    )
    assert fitted == [model]
    assert tokenizer_used.vocabulary == tokenizer.vocabulary
    saved = config_lib.resolve(sentiment.SentimentConfig, [tmp_path / "run" / "config.yaml"])
    assert (saved.model.embedding_dim, saved.model.units) == (8, 12)  # the language model's sizes, not 4 and 4
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], lm.embedding.get_weights()[0])
    forward = model.get_layer("bidirectional_0").forward_layer
    for a, b in zip(forward.get_weights(), lm.grus[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(sentiment_steps.RunError, match="not both"):
        sentiment_steps.train(
            config, data, tmp_path / "other", init_from=tmp_path / "run", init_encoder_from=cli_run[0]
        )


def test_first_words_keeps_whole_lines_within_the_word_budget():
    lines = ["a b", "c d e", "f", "g h"]
    assert steps.first_words(lines, 5) == ["a b", "c d e"]
    assert steps.first_words(lines, 6) == ["a b", "c d e", "f"]
    assert steps.first_words(lines, 1) == []
    assert steps.first_words(lines, None) == lines


def test_pretraining_on_the_classifiers_texts_respects_the_word_budget(tmp_path):
    train = pd.DataFrame({"text": TRAIN[:9], "label": ["pos", "neg"] * 4 + ["pos"]})
    validation = pd.DataFrame({"text": TRAIN[9:], "label": ["pos"]})
    data = LabeledData(train, validation, None, LabelMap.from_labels(train["label"]))
    run = sentiment_steps.pretrain_language_model(
        lm_config("training.epochs=1"), data, tmp_path / "lm", max_words=12, verbose=0
    )
    # the first two texts hold 12 words; the stream has one </s> in front and one after each line
    assert json.loads((run / "training.json").read_text())["train_tokens"] == 1 + 12 + 2
    config = sentiment_config(**{"training.epochs": 1})
    sentiment_steps.train(config, data, tmp_path / "classifier", init_encoder_from=run, verbose=0)
    _, lm_tokenizer, lm = steps.load_run(run)
    _, tokenizer, _, model = sentiment_steps.load_run(tmp_path / "classifier")
    assert tokenizer.vocabulary == lm_tokenizer.vocabulary  # learnt from the two texts only
    assert set(tokenizer.vocabulary) >= {"the", "cat", "dog", "log"}
    assert "ran" not in tokenizer.vocabulary  # only in later texts


def test_pretraining_also_reads_the_training_split_of_other_datasets(tmp_path, monkeypatch):
    train = pd.DataFrame({"text": TRAIN[:4], "label": ["pos", "neg"] * 2})
    validation = pd.DataFrame({"text": TRAIN[9:], "label": ["pos"]})
    data = LabeledData(train, validation, None, LabelMap.from_labels(train["label"]))
    other = ["zebras graze", "zebras run far"]
    asked = []

    def load(name, split, data_dir=None):
        asked.append((name, split))
        return pd.DataFrame({"text": other})

    monkeypatch.setattr(sentiment_steps.datasets, "load", load)
    run = sentiment_steps.pretrain_language_model(
        lm_config("training.epochs=1"), data, tmp_path / "lm", also=["other"], verbose=0
    )
    assert asked == [("other", "train")]  # never a test split
    words = sum(len(t.split()) for t in TRAIN[:4] + other)
    assert json.loads((run / "training.json").read_text())["train_tokens"] == 1 + words + len(TRAIN[:4] + other)
    _, tokenizer, _ = steps.load_run(run)
    assert "zebras" in tokenizer.vocabulary


def test_pretraining_validates_on_the_first_words_of_the_validation_texts(tmp_path, monkeypatch):
    train = pd.DataFrame({"text": TRAIN[:4], "label": ["pos", "neg"] * 2})
    validation = pd.DataFrame({"text": ["a b c", "d e", "f g h i"], "label": ["pos", "neg", "pos"]})
    data = LabeledData(train, validation, None, LabelMap.from_labels(train["label"]))
    corpora = []
    monkeypatch.setattr(steps, "train", lambda config, corpus, run_dir, verbose: corpora.append(corpus))
    for budget, expected in [(5, ["a b c", "d e"]), (2, ["a b c"])]:  # never empty: one text at least
        monkeypatch.setattr(sentiment_steps, "PRETRAIN_VALIDATION_WORDS", budget)
        sentiment_steps.pretrain_language_model(lm_config(), data, tmp_path / "lm", verbose=0)
        assert corpora[-1].validation == expected
        assert corpora[-1].train == TRAIN[:4]
