"""Language model on tiny models: perplexity arithmetic, token streams,
truncated BPTT, evaluation files, generation, the task contract (export in
a fresh process, exact resume), the CLI, and the encoder transfer to
sentiment."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import dataclasses
import io
import json
import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from harness import call_export, call_signature, run_task_test, train_tiny

from nlptool import config as config_lib
from nlptool import runs, tasks
from nlptool.cli import main
from nlptool.data import datasets
from nlptool.errors import RunError, UsageError
from nlptool.export import ExportError
from nlptool.models import classifier
from nlptool.models import language_model as lm_models
from nlptool.models.language_model import (
    LanguageModel,
    build_model,
    stream_nll,
    stream_windows,
    token_stream,
    window_dataset,
)
from nlptool.models.language_model_serving import LanguageModelServing
from nlptool.tasks import sentiment
from nlptool.tasks.base import DataSource, Preprocessing, Splits
from nlptool.tasks.language_model import LanguageModelConfig, first_words, learning_rate_schedule, word_count
from nlptool.tokenizers import END_ID, PAD_ID, START_ID, UNK_ID

LM = tasks.get("language-model")
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
SIGNATURES = "serving_default, generate, beam_search, generation_defaults"


def lm_config(*overrides):
    return config_lib.resolve(LanguageModelConfig, [], [*TINY, *overrides])


def make_tokenizer(config, lines):
    """The tokeniser that training learns from the training `lines` (Task.prepare)."""
    _, preprocessing = LM.prepare(config, Splits(list(lines), list(lines)))
    return preprocessing.tokenizers["text"]


def quiet(*args):
    pass


def run_cli(args):
    """main(args) -> (exit code, stdout, stderr); argparse's exits (--help, bad flags) give their code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as done:
            code = done.code
    return code, out.getvalue(), err.getvalue()


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts(rows):
    return [row["text"] for row in rows]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return write_lines(root / "train.txt", TRAIN), write_lines(root / "test.txt", TEST)


def cli_train_args(train_file, test_file):
    """`nlptool train language-model` of TINY on these files (without --epochs and --run-dir)."""
    sets = [a for s in TINY for a in ("--set", s)]
    return ["train", "language-model", "--train-file", train_file, "--test-file", test_file, *sets]


@pytest.fixture(scope="module")
def cli_run(files, tmp_path_factory):
    """A 2-epoch word-level run trained by `nlptool train language-model`: (run directory, what it printed)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    code, out, err = run_cli([*cli_train_args(*files), "--epochs", "2", "--run-dir", run])
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
    """(config, tokenizer, model with the best weights) of the CLI run."""
    trained = runs.Run.open(cli_run[0]).load()
    return trained.config, trained.preprocessing.tokenizers["text"], trained.model


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
    tokenizer = make_tokenizer(config, ["a b c", "a <unk> b", "c"])
    assert "<unk>" not in tokenizer.vocabulary  # a reserved token in the text keeps its reserved meaning
    a, b, c = (tokenizer.vocabulary.index(w) + 4 for w in "abc")
    lines = ["a b", "", "c"]
    stream = token_stream(tokenizer, lines, "line")
    assert stream.tolist() == [END_ID, a, b, END_ID, END_ID, c, END_ID]
    assert len(stream) == word_count(lines, "line") + 1
    unknown = ["c <unk> zebra", "<unk>"]
    stream = token_stream(tokenizer, unknown, "line")
    assert stream.tolist() == [END_ID, c, UNK_ID, UNK_ID, END_ID, UNK_ID, END_ID]
    assert len(stream) == word_count(unknown, "line") + 1


def test_token_stream_does_not_depend_on_batching_or_chunking(monkeypatch):
    words = make_tokenizer(lm_config(), TRAIN)
    chars = make_tokenizer(lm_config("tokenizer.kind=char", "tokenizer.vocab_size=40"), ["ab c\n"])
    lines = ["a b c", "", "ab c", "c a"]
    expected_words = token_stream(words, lines, "line")
    expected_chars = token_stream(chars, lines, "text")
    # "text": the text, newlines included, as characters after one </s>
    assert expected_chars.tolist() == [END_ID] + chars(["a b c\n\nab c\nc a\n"]).numpy()[0].tolist()
    assert chars.vocabulary.index("\n") + 4 in expected_chars
    monkeypatch.setattr(lm_models, "TOKENIZE_BATCH", 1)
    monkeypatch.setattr(lm_models, "CHUNK_CHARACTERS", 3)
    np.testing.assert_array_equal(token_stream(words, lines, "line"), expected_words)
    np.testing.assert_array_equal(token_stream(chars, lines, "text"), expected_chars)
    # pieces end at line ends, so a word tokeniser reading "text" never sees a word cut in two
    # (4 characters would cut "ab" of the third line)
    monkeypatch.setattr(lm_models, "CHUNK_CHARACTERS", 4)
    whole_text = [END_ID] + words(["\n".join(lines)]).numpy()[0].tolist()
    assert token_stream(words, lines, "text").tolist() == whole_text


def test_a_backward_stream_is_each_line_last_token_first_lines_in_reverse_order():
    tokenizer = make_tokenizer(lm_config(), TRAIN)
    lines = ["the cat sat", "", "a dog ran on the mat"]
    backward = token_stream(tokenizer, lines, "line", "backward")
    read_backwards = [" ".join(reversed(line.split())) for line in reversed(lines)]
    np.testing.assert_array_equal(backward, token_stream(tokenizer, read_backwards, "line"))
    np.testing.assert_array_equal(backward, token_stream(tokenizer, lines, "line")[::-1])
    with pytest.raises(ValueError, match="direction must be 'forward' or 'backward', not 'sideways'"):
        token_stream(tokenizer, lines, "line", "sideways")


def test_a_backward_model_generates_what_comes_before_the_prompt(tmp_path):
    """A backward model that learnt one line continues "four five six" with the words before it,
    in reading order, by sampling, greedy and beam search, in the run and in its export."""
    lines = ["one two three four five six"] * 40
    overrides = [
        "model.units=32",
        "model.embedding_dim=16",
        "model.layers=1",
        "model.dropout=0",
        "model.direction=backward",
        "tokenizer.vocab_size=20",
        "training.batch_size=2",
        "training.window=6",
        "training.epochs=8",
        "training.lr_decay_start=100",
        "generation.temperature=0",
    ]
    run = runs.Run.open(train_tiny(LM, Splits(lines, lines[:4]), overrides, tmp_path / "run").path)
    assert run.evaluate(lines[:4])["perplexity"] < 1.05
    expected = [{"text": "one two three"}]
    assert run.predict(["four five six"], max_new_tokens=6) == expected
    assert run.predict(["four five six"], max_new_tokens=6, beam_width=3) == expected
    export = run.export(tmp_path / "export")
    calls = [("serving_default", {"prompt": (["four five six", "three four"], "string")})]
    assert call_export(export, calls)[0]["text"] == ["one two three", "one two"]


@pytest.mark.parametrize("units", [8, 12])  # the embedding's size (no projection) and another (a projection)
@pytest.mark.parametrize("tied", [True, False])
def test_a_model_started_from_another_computes_what_it_computes_tied_or_not(units, tied):
    """copy_weights: the same logits for the same ids, whether the target ties its softmax or not."""
    keras.utils.set_random_seed(5)
    source = lm_models.LanguageModel(30, 8, units, 2, tie_weights=tied)
    source.build()
    for variable in source.weights:  # not the initial zeros of the biases
        variable.assign(tf.random.normal(variable.shape, stddev=0.3))
    ids = tf.constant([[3, 7, 11, 29, 4]])
    expected, _ = source(ids)
    for target_tied in (True, False):
        target = lm_models.LanguageModel(30, 8, units, 2, tie_weights=target_tied, seed=9)
        target.build()
        if target_tied and not tied:
            with pytest.raises(ValueError, match="ties its softmax to the embedding, the one it starts from has"):
                lm_models.copy_weights(source, target)
            continue
        lm_models.copy_weights(source, target)
        np.testing.assert_allclose(target(ids)[0].numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    deeper = lm_models.LanguageModel(30, 8, units, 3)
    deeper.build()
    with pytest.raises(ValueError):
        lm_models.copy_weights(source, deeper)


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
    rate = learning_rate_schedule(config)
    assert [rate(epoch) for epoch in range(4)] == pytest.approx([0.5, 0.5, 0.05, 0.005])
    # what the flow trains with: this schedule and the config's back-off factor
    task_rate, back_off = LM.schedule(config)
    assert [task_rate(epoch) for epoch in range(4)] == pytest.approx([0.5, 0.5, 0.05, 0.005])
    assert back_off == config.training.lr_backoff == 0.25


@pytest.mark.parametrize("value", ["0", "1", "1.5"])
def test_a_back_off_outside_zero_to_one_is_a_config_error(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*lr_backoff must be in \(0, 1\)"):
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


def fake_run(path, config, lines, zero=False):
    """A run directory made by hand (no training): run.json, config, tokeniser, weights."""
    _, fresh = runs.Run.create(path, LM, config, DataSource(in_memory=True))
    assert fresh
    _, preprocessing = LM.prepare(config, Splits(lines, lines))
    config_lib.save_yaml(config, path / runs.CONFIG_FILE)
    preprocessing.save(path, LM.tokenizer_folders)
    keras.utils.set_random_seed(0)
    model = LM.build_model(config, preprocessing)
    if zero:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    (path / runs.CHECKPOINT).parent.mkdir()
    model.save_weights(path / runs.CHECKPOINT)
    return preprocessing.tokenizers["text"], model


@pytest.mark.parametrize("unit", ["text", "line"])
def test_evaluate_a_uniform_char_model(tmp_path, unit):
    config = lm_config("tokenizer.kind=char", "tokenizer.vocab_size=60", f"tokenizer.unit={unit}")
    tokenizer, _ = fake_run(tmp_path / "run", config, TRAIN, zero=True)
    vocabulary = tokenizer.vocabulary_size()
    assert vocabulary == 4 + len(set("".join(TRAIN)) | ({"\n"} if unit == "text" else set()))
    metrics = runs.Run.open(tmp_path / "run").evaluate(TEST)
    assert metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    # every character and (line unit) every end of line is predicted once
    assert metrics["tokens"] == sum(len(line) + 1 for line in TEST)
    assert metrics["perplexity"] == pytest.approx(vocabulary, rel=1e-6)
    assert metrics["bits_per_character"] == pytest.approx(math.log2(vocabulary), rel=1e-6)
    if unit == "line":  # per word (PTB convention: words plus ends of lines)
        words = word_count(TEST, "line")
        assert words == 6 + 1 + 3 + 1
        assert metrics["word_perplexity"] == pytest.approx(vocabulary ** (metrics["tokens"] / words), rel=1e-5)
    else:
        assert "word_perplexity" not in metrics
    summary = LM.summary(metrics)
    assert summary.startswith(f"test: {metrics['tokens']:,} tokens, perplexity {metrics['perplexity']:.2f}")
    assert f"bits per character {metrics['bits_per_character']:.4f}" in summary


def test_evaluate_writes_the_stream_perplexity_of_a_random_char_model(tmp_path):
    config = lm_config("tokenizer.kind=char", "tokenizer.vocab_size=60", "tokenizer.unit=text")
    tokenizer, model = fake_run(tmp_path / "run", config, TRAIN)
    metrics = json.loads(json.dumps(runs.Run.open(tmp_path / "run").evaluate(TEST)))
    stream = token_stream(tokenizer, TEST, "text")
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
    beam = endless.beam_search(tf.constant(PROMPTS), tf.constant(20), tf.constant(1), tf.constant(0.0), tf.constant(0))
    assert [t.decode() for t in beam["text"].numpy()] == texts
    tokens, _ = endless.beam_ids(tf.constant(PROMPTS), 20, 1)
    np.testing.assert_array_equal(tokens.numpy(), ids)


def test_beam_search_keeps_min_new_tokens_and_divides_by_the_length_penalty(loaded):
    """A model whose end token outweighs every other: plain beam search ends at once (empty text);
    with min_new_tokens=3 every continuation is 3 tokens and the end, and length_penalty alpha divides
    that hypothesis's log-probability by ((5 + 4) / 6) ** alpha."""
    config, tokenizer, trained = loaded
    model = build_model(config, tokenizer.vocabulary_size())
    model.set_weights(trained.get_weights())
    bias = model.output_bias.numpy()
    bias[END_ID] += 50.0
    model.output_bias.assign(bias)
    module = LanguageModelServing(tokenizer, model, config.generation)
    prompts = tf.constant(PROMPTS)

    def beam(**options):
        result = module.beam_search(prompts, tf.constant(10), tf.constant(3), **options)
        return [t.decode() for t in result["text"].numpy()], result["score"].numpy()

    texts, _ = beam(length_penalty=tf.constant(0.0), min_new_tokens=tf.constant(0))
    assert texts == ["", ""]
    tokens, plain = module.beam_ids(prompts, 10, 3, 0.0, 3)
    assert not np.isin(tokens.numpy()[:, :3], [PAD_ID, END_ID]).any() and (tokens.numpy()[:, 3] == END_ID).all()
    texts, scores = beam(length_penalty=tf.constant(0.0), min_new_tokens=tf.constant(3))
    assert [len(t.split()) for t in texts] == [3, 3]
    np.testing.assert_allclose(scores, plain.numpy(), rtol=1e-6)
    _, normalised = beam(length_penalty=tf.constant(1.0), min_new_tokens=tf.constant(3))
    np.testing.assert_allclose(normalised, plain.numpy() / 1.5, rtol=1e-5)


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
    stream = token_stream(tokenizer, ["the cat"], "line")
    assert stream[0] == END_ID
    states, last = module.prompt_states(tf.constant(["the cat"]))
    _, expected = model(tf.constant([stream[:2]]))
    assert last.numpy()[0] == stream[2]
    for a, b in zip(states, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


# === 6. the task contract; the export, called in a process that never imports nlptool ===


def test_the_language_model_meets_the_task_contract(tmp_path, interrupted_at_epoch):
    """Config round trip, .keras round trip, export, the same text from the run, the export and a
    process without nlptool, and an interrupted run resuming to the uninterrupted weights."""
    run = run_task_test(
        LM,
        Splits(TRAIN[:-1], TRAIN[-1:], TEST),
        [*TINY, "training.epochs=2"],
        ["the cat", "a dog sat", ""],
        tmp_path,
        predict_options={"max_new_tokens": 6, "temperature": 1.0, "top_k": 5, "seed": 7},
        signature_calls=[  # every signature, in both loaders
            generate_call(["the cat", "a dog sat", ""], 6, 1.0, 5, 0.9, 7),
            (
                "beam_search",
                beam_inputs(["the cat", ""], 5, 3, length_penalty=1.0, min_new_tokens=2),
            ),
            ("generation_defaults", {}),
        ],
        resume=True,
        interrupted_at_epoch=interrupted_at_epoch,
    )
    assert run.metrics["split"] == "test" and run.metrics["tokens"] == word_count(TEST, "line")


def generate_call(prompts, max_new_tokens, temperature, top_k, top_p, seed):
    inputs = {
        "prompt": (prompts, "string"),
        "max_new_tokens": (max_new_tokens, "int32"),
        "temperature": (temperature, "float32"),
        "top_k": (top_k, "int32"),
        "top_p": (top_p, "float32"),
        "seed": (seed, "int64"),
    }
    return "generate", inputs


def beam_inputs(prompts, max_new_tokens, beam_width, length_penalty=0.0, min_new_tokens=0):
    return {
        "prompt": (prompts, "string"),
        "max_new_tokens": (max_new_tokens, "int32"),
        "beam_width": (beam_width, "int32"),
        "length_penalty": (length_penalty, "float32"),
        "min_new_tokens": (min_new_tokens, "int32"),
    }


def test_export_in_a_fresh_process_generates_the_same_text(cli_run, exported):
    run, out = cli_run[0], exported[0]
    prompts = ["the cat", "a dog sat", ""]
    options = {"max_new_tokens": 10, "temperature": 1.0, "top_k": 5, "seed": 7}
    sampled = texts(runs.load(run).predict(prompts, **options))
    assert texts(runs.load(out).predict(prompts, **options)) == sampled
    # TINY's and the config's
    defaults = {"max_new_tokens": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "length_penalty": 0.0}
    defaults["min_new_tokens"] = 0
    fresh, default, seed_0, beam, greedy, fresh_defaults = call_export(
        out,
        [
            generate_call(prompts, 10, 1.0, 5, 1.0, 7),
            ("serving_default", {"prompt": (prompts, "string")}),
            generate_call(prompts, *list(defaults.values())[:4], 0),
            ("beam_search", beam_inputs(prompts, 6, 1)),
            generate_call(prompts, 6, 0.0, 0, 1.0, 0),
            ("generation_defaults", {}),
        ],
    )
    assert fresh["text"] == sampled
    assert sorted(default) == ["text"] and default["text"] == seed_0["text"]  # serving_default: the defaults, seed 0
    assert beam["text"] == greedy["text"]
    assert fresh_defaults == defaults
    assert all(len(t.split()) <= 10 for t in sampled)
    # ids and lengths: every row ends at its length, padded after it
    for ids, length in zip(fresh["ids"], fresh["lengths"]):
        assert 1 <= length <= 10 and all(i != PAD_ID for i in ids[:length]) and all(i == PAD_ID for i in ids[length:])
    # the run's and the export's predict take the same decoding settings as the signatures
    for path in (run, out):
        assert texts(runs.load(path).predict(prompts, max_new_tokens=6, beam_width=1)) == greedy["text"]
        assert texts(runs.load(path).predict(prompts, max_new_tokens=6, temperature=0.0)) == greedy["text"]
        assert texts(runs.load(path).predict(prompts)) == default["text"]
    with pytest.raises(ExportError, match="already exists"):
        runs.Run.open(run).export(out, version=1)
    assert (out / "1" / "saved_model.pb").is_file()
    info = json.loads((out / "1" / runs.EXPORT_INFO).read_text())
    assert info["task"] == "language-model" and info["signatures"] == SIGNATURES.split(", ")


def test_predict_takes_a_list_of_prompts(cli_run):
    with pytest.raises(UsageError, match=r"not a single string"):
        runs.load(cli_run[0]).predict("the cat")
    for width in (0, 65):
        with pytest.raises(UsageError, match=r"beam_width must be in \[1, 64\], not "):
            runs.load(cli_run[0]).predict(["the cat"], beam_width=width)


# === 7. training, resuming ===


def test_training_fills_the_run_directory(cli_run, files):
    run, out = cli_run
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert np.isfinite(history["val_perplexity"]).all() and (history["val_perplexity"] > 1).all()
    # perplexity is exp(loss), the mean nll per token
    np.testing.assert_allclose(history["perplexity"], np.exp(history["loss"]), rtol=1e-5)
    np.testing.assert_allclose(history["val_perplexity"], np.exp(history["val_loss"]), rtol=1e-5)
    # each epoch's rate: the schedule's, times the back-off for every earlier epoch that ended worse
    config = config_lib.resolve(LanguageModelConfig, [run / "config.yaml"])
    assert config == lm_config("training.epochs=2")
    rate, expected, best, back_offs = learning_rate_schedule(config), [], math.inf, 0
    for epoch, perplexity in enumerate(history["val_perplexity"]):
        expected.append(rate(epoch) * config.training.lr_backoff**back_offs)
        best, back_offs = (perplexity, back_offs) if perplexity < best else (best, back_offs + 1)
    assert history["learning_rate"].tolist() == pytest.approx(expected)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tokens"] == word_count(TEST, "line") == 11
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["nll_per_token"]))
    assert "9 training, 1 validation, 2 test lines" in out
    assert f"test: 11 tokens, perplexity {metrics['perplexity']:.2f}\nwrote {run / 'metrics.json'}\n" in out
    trained = json.loads((run / "training.json").read_text())
    assert trained["epochs"] == 2
    # the stream: one </s> in front, every training line's words and its </s>
    assert trained["train_tokens"] == 1 + word_count(TRAIN[:-1], "line")
    record = json.loads((run / "run.json").read_text())
    assert record["task"] == "language-model" and record["options"] == {"init_from": None}
    assert record["config"] == config_lib.to_dict(config)
    assert record["data"]["train_file"] == str(files[0].resolve())
    assert record["data"]["test_file"] == str(files[1].resolve())
    for name in ("config.yaml", "tokenizer.json", "checkpoints/best.weights.h5", "history.csv"):
        assert (run / name).is_file(), name


def test_resume_after_interruption_gives_the_uninterrupted_run(cli_run, files, tmp_path, interrupted_at_epoch):
    """Interrupted in Python, resumed by the command line with the same request: the CLI run again."""
    straight = cli_run[0]
    config = runs.Run.open(straight).config
    assert config.model.dropout > 0  # the dropout masks must resume too
    source = DataSource(train_file=files[0], test_file=files[1], columns={"text": "text"})  # what the CLI records
    run = tmp_path / "run"
    with interrupted_at_epoch(1):
        runs.train(LM, config, source, run, verbose=0, say=quiet)
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [0]
    assert not runs.Run.open(run).finished
    code, out, err = run_cli([*cli_train_args(*files), "--epochs", "2", "--run-dir", run])
    assert code == 0, err
    assert f"resuming {run}" in out
    resumed, reference = pd.read_csv(run / "history.csv"), pd.read_csv(straight / "history.csv")
    pd.testing.assert_frame_equal(resumed, reference)
    for a, b in zip(runs.Run.open(run).load().model.get_weights(), runs.Run.open(straight).load().model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert json.loads((run / "metrics.json").read_text())["perplexity"] == pytest.approx(
        json.loads((straight / "metrics.json").read_text())["perplexity"], rel=1e-6
    )
    # finished: the same request again is refused, not trained again
    code, _, err = run_cli([*cli_train_args(*files), "--epochs", "2", "--run-dir", run])
    assert code == 2 and "holds a finished run of these settings" in err


def test_a_sampled_softmax_run_resumes_to_the_uninterrupted_weights(files, tmp_path, interrupted_at_epoch):
    config = lm_config("training.softmax_samples=5", "training.epochs=2")
    source = DataSource(train_file=files[0], test_file=files[1])
    runs.train(LM, config, source, tmp_path / "straight", verbose=0, say=quiet)
    with interrupted_at_epoch(1):
        runs.train(LM, config, source, tmp_path / "run", verbose=0, say=quiet)
    runs.train(LM, config, source, tmp_path / "run", verbose=0, say=quiet)
    resumed, reference = (
        pd.read_csv(tmp_path / "run" / "history.csv"),
        pd.read_csv(tmp_path / "straight" / "history.csv"),
    )
    assert "perplexity" not in reference and "val_perplexity" in reference  # validation: the full softmax
    pd.testing.assert_frame_equal(resumed, reference)  # the second epoch drew the same samples
    for a, b in zip(
        runs.Run.open(tmp_path / "run").load().model.get_weights(),
        runs.Run.open(tmp_path / "straight").load().model.get_weights(),
    ):
        np.testing.assert_array_equal(a, b)


def test_an_epoch_that_ends_worse_backs_off_to_the_best_weights(tmp_path):
    """A rate that grows 30-fold an epoch (a schedule made to fail) throws the model off after the
    first epoch: from each epoch that ends worse on, the rate is times the back-off, training goes on
    through perplexities past float32's range, and the run keeps the first epoch's weights."""
    overrides = [*TINY, "training.epochs=3", "training.learning_rate=1"]
    overrides += ["training.lr_decay_start=1", "training.lr_decay=30"]
    run = train_tiny(LM, Splits(TRAIN[:-1], TRAIN[-1:]), overrides, tmp_path / "run")
    history = pd.read_csv(run.path / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    assert history["val_perplexity"][1] > history["val_perplexity"][0]
    assert history["learning_rate"].tolist() == pytest.approx([1.0, 30.0, 30.0**2 * 0.25])
    assert history["val_perplexity"].idxmin() == 0
    # the best checkpoint holds the first epoch's weights: their validation perplexity again
    trained = run.load()
    model, tokenizer = trained.model, trained.preprocessing.tokenizers["text"]
    model.carry_states(2)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    validation = window_dataset(token_stream(tokenizer, TRAIN[-1:], "line"), 2, 5)
    again = model.evaluate(validation, return_dict=True, verbose=0)["perplexity"]
    assert again == pytest.approx(history["val_perplexity"][0], rel=1e-5)


def test_a_perplexity_past_float32_is_logged_as_inf(tmp_path):
    """exp(loss) beyond float32 (which TensorBoard logs) is inf, not a float64 that stops training."""
    model = LanguageModel(12, 8, 8, layers=1)
    model.build()
    bias = np.zeros(12, np.float32)
    bias[3] = 300.0  # every token but 3 is e^-300 likely
    model.output_bias.assign(bias)
    model.carry_states(3)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # fit changes nothing
    dataset = window_dataset(LONG_STREAM, 3, 4)
    logs = model.fit(dataset, epochs=1, verbose=0, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))]).history
    assert logs["loss"][0] > 100 and logs["perplexity"] == [math.inf]
    measured = model.evaluate(dataset, return_dict=True, verbose=0)
    assert measured["loss"] == pytest.approx(logs["loss"][0]) and measured["perplexity"] == math.inf


def test_the_time_budget_stops_after_the_epoch_that_would_pass_it(tmp_path):
    overrides = [*TINY, "training.epochs=4", "training.max_minutes=1e-6"]
    run = train_tiny(LM, Splits(TRAIN[:-1], TRAIN[-1:]), overrides, tmp_path / "run")
    assert pd.read_csv(run.path / "history.csv")["epoch"].tolist() == [0]
    assert run.finished and json.loads((run.path / "training.json").read_text())["epochs"] == 1
    assert run.load()  # the best checkpoint of the one epoch


# === 8. the CLI ===


def test_cli_evaluate_generate_export(cli_run, exported, files):
    run, train_output = cli_run
    code, out, _ = run_cli(["evaluate", run])
    assert code == 0
    # the test file again, by default (named by its path rather than "test"), with the perplexity of training's
    summary = next(line for line in train_output.splitlines() if line.startswith("test: "))
    assert out == f"{files[1].resolve()}: {summary.split(': ', 1)[1]}\nwrote {run / 'metrics.json'}\n"
    code, out, _ = run_cli(["evaluate", run, "--test-file", files[0]])
    assert code == 0 and f": {word_count(TRAIN, 'line')} tokens, perplexity" in out
    assert json.loads((run / "metrics.json").read_text())["split"] == str(files[0].resolve())
    generate_args = ["the cat", "a", "--seed", "3", "--max-new-tokens", "6"]
    code, first, _ = run_cli(["generate", run, *generate_args])
    assert code == 0
    lines = first.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["the cat", "a"]
    assert all(len(line.split("\t")[1].split()) <= 6 for line in lines)
    assert run_cli(["generate", run, *generate_args])[1] == first
    export, printed = exported
    assert printed == f"wrote {export / '1'} (signatures: {SIGNATURES})\n"
    assert run_cli(["generate", export, *generate_args])[1] == first
    assert run_cli(["generate", export, *generate_args[:3], "4", *generate_args[4:]])[1] != first  # --seed 4
    code, _, err = run_cli(["export", run, export, "--version", "1"])
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["generate", export, "a", "--beam-width", "0"])
    assert code == 2 and "beam_width must be in [1, 64], not 0." in err
    code, beam, _ = run_cli(["generate", export, "the cat", "--beam-width", "1", "--max-new-tokens", "6"])
    assert code == 0
    assert beam == run_cli(["generate", run, "the cat", "--temperature", "0", "--max-new-tokens", "6"])[1]
    code, _, err = run_cli(["evaluate", export])
    assert code == 2 and "not a run directory" in err


def test_cli_predict_is_generate_for_a_language_model(cli_run, exported):
    """`nlptool predict` on a language-model run or export prints what `nlptool generate` prints,
    which is what Python's predict gives."""
    args = ["the cat", "a", "--seed", "1", "--max-new-tokens", "5"]
    code, generated, err = run_cli(["generate", cli_run[0], *args])
    assert code == 0, err
    expected = runs.load(cli_run[0]).predict(["the cat", "a"], seed=1, max_new_tokens=5)
    assert generated == "".join(f"{prompt}\t{row['text']}\n" for prompt, row in zip(["the cat", "a"], expected))
    for path in (cli_run[0], exported[0]):
        code, predicted, err = run_cli(["predict", path, *args])
        assert code == 0, err
        assert predicted == generated
    code, as_json, _ = run_cli(["predict", exported[0], *args, "--json"])
    assert code == 0
    assert [json.loads(line) for line in as_json.splitlines()] == [
        {"input": prompt, **row} for prompt, row in zip(["the cat", "a"], expected)
    ]


@pytest.mark.parametrize("which", ["run", "export"])
def test_cli_translate_refuses_a_language_model_in_one_line(cli_run, exported, which):
    path = cli_run[0] if which == "run" else exported[0]
    code, out, err = run_cli(["translate", path, "the cat"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nlptool: error: ")
    assert f"{path} is a language-model {which}" in err
    assert "`nlptool translate` is for translation runs and exports" in err
    assert f"nlptool predict {path}" in err


def test_cli_train_help_shows_the_language_model_options_only():
    code, out, _ = run_cli(["train", "language-model", "--help"])
    assert code == 0
    for flag in ("--dataset", "--train-file", "--validation-file", "--test-file", "--text-column", "--run-dir"):
        assert flag in out, flag
    assert "--init-from RUN_DIR|preset:NAME" in out  # a language model to start from
    for flag in ("--label-column", "--init-encoder-from", "--source-column", "--target-column"):
        assert flag not in out, flag


def test_cli_predict_help_shows_the_decoding_options(cli_run):
    code, out, _ = run_cli(["generate", cli_run[0], "--help"])
    assert code == 0
    for flag in ("--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--beam-width"):
        assert flag in out, flag


def write_table(path, lines, column="body"):
    """`lines` in the column `column` of a .jsonl, .tsv or .csv file, after an id column."""
    if path.suffix == ".jsonl":
        rows = [json.dumps({"id": str(i), column: line}) for i, line in enumerate(lines)]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    else:
        pd.DataFrame({"id": range(len(lines)), column: lines}).to_csv(
            path, sep="\t" if path.suffix == ".tsv" else ",", index=False
        )
    return path


def test_cli_trains_alike_from_a_text_file_and_from_a_column_of_a_table(files, tmp_path):
    """A .txt file is one text a line; a .jsonl or .tsv file gives its --text-column. The same lines give
    the same run, and evaluation reads a test table by the run's column."""
    weights, tokens, perplexities = {}, {}, {}
    for suffix in (".txt", ".jsonl", ".tsv"):
        if suffix == ".txt":
            train, test, column = files[0], files[1], []
        else:
            train = write_table(tmp_path / f"train{suffix}", TRAIN)
            test = write_table(tmp_path / f"test{suffix}", TEST)
            column = ["--text-column", "body"]
        run = tmp_path / f"run{suffix}"
        code, out, err = run_cli([*cli_train_args(train, test), *column, "--epochs", "1", "--run-dir", run])
        assert code == 0, err
        assert "9 training, 1 validation, 2 test lines" in out
        tokens[suffix] = json.loads((run / "training.json").read_text())["train_tokens"]
        weights[suffix] = runs.Run.open(run).load().model.get_weights()
        code, out, err = run_cli(["evaluate", run, "--test-file", test])  # the run's column, without --text-column
        assert code == 0, err
        perplexities[suffix] = json.loads((run / "metrics.json").read_text())["perplexity"]
    assert tokens[".txt"] == 1 + word_count(TRAIN[:-1], "line")
    assert tokens[".jsonl"] == tokens[".tsv"] == tokens[".txt"]
    assert perplexities[".jsonl"] == perplexities[".tsv"] == perplexities[".txt"]
    for suffix in (".jsonl", ".tsv"):
        for a, b in zip(weights[".txt"], weights[suffix], strict=True):
            np.testing.assert_array_equal(a, b)


def test_python_trains_alike_from_a_text_file_lists_and_a_data_frame(files, tmp_path):
    """`nlptool.train` takes a .txt corpus (one text a line: no column), lists of lines, or a data
    frame's column; the same lines make the same run."""
    import nlptool

    overrides = [*TINY, "training.epochs=1"]
    from_file = nlptool.train("language-model", tmp_path / "file", train=files[0], overrides=overrides, verbose=0)
    from_lists = nlptool.train(
        "language-model", tmp_path / "lists", train=TRAIN[:-1], validation=TRAIN[-1:], overrides=overrides, verbose=0
    )
    from_frame = nlptool.train(
        "language-model",
        tmp_path / "frame",
        train=pd.DataFrame({"body": TRAIN[:-1]}),
        validation=pd.DataFrame({"body": TRAIN[-1:]}),
        columns={"text": "body"},
        overrides=overrides,
        verbose=0,
    )
    reference = from_file.load().model.get_weights()
    for run in (from_lists, from_frame):
        for a, b in zip(reference, run.load().model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert nlptool.load(from_file.path).predict(["the cat"], seed=2) == from_lists.predict(["the cat"], seed=2)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--train-file", "missing.txt"], "missing.txt does not exist"),
        (["--train-file", "TRAIN", "--test-file", "nowhere.txt"], "nowhere.txt does not exist"),
        (["--train-file", "TABLE"], "has no column 'text' (argument `--text-column`)"),
        (["--train-file", "TABLE", "--text-column", "review"], "has no column 'review' (argument `--text-column`)"),
        (["--train-file", "BLANK", "--text-column", "body"], "holds no text"),
        (["--train-file", "TRAIN", "--set", "model.unitz=3"], "model.unitz"),
        (["--train-file", "EMPTY"], "holds no text"),
        (["--train-file", "ONE"], "too few lines to hold some out for validation"),
        (["--dataset", "sst2"], "'sst2' is not a language-modelling corpus"),
    ],
)
def test_cli_bad_input_leaves_no_run_directory(files, tmp_path, args, message):
    named = {
        "TRAIN": files[0],
        "EMPTY": write_lines(tmp_path / "empty.txt", ["", " "]),
        "ONE": write_lines(tmp_path / "one.txt", ["a single line"]),
        "TABLE": write_table(tmp_path / "train.csv", TRAIN),
        "BLANK": write_table(tmp_path / "blank.jsonl", ["", " "]),
    }
    run = tmp_path / "run"
    code, out, err = run_cli(["train", "language-model", *[named.get(a, a) for a in args], "--run-dir", run])
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("nlptool: error: ")  # one line, no traceback
    assert not run.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--train-file", "TRAIN", "--label-column", "x"], "unrecognized arguments: --label-column x"),
        (["--train-file", "TRAIN", "--init-encoder-from", "x"], "unrecognized arguments: --init-encoder-from x"),
        (["--train-file", "TRAIN", "--dataset", "ptb"], "not allowed with argument"),
        (["--test-file", "TRAIN"], "one of the arguments --dataset --train-file is required"),
    ],
)
def test_cli_flags_of_other_tasks_are_usage_errors(files, tmp_path, args, message):
    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "language-model", *[files[0] if a == "TRAIN" else a for a in args], "--run-dir", run]
    )
    assert code == 2
    assert message in err
    assert not run.exists()


# === 9. the language model's encoder in a sentiment model ===


def sentiment_config(**changes):
    overrides = ["model.units=4", "model.embedding_dim=4", "model.dropout=0.0", "training.batch_size=4"]
    return config_lib.resolve(sentiment.SentimentConfig, [], overrides + [f"{k}={v}" for k, v in changes.items()])


def labelled(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


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
    model = classifier.build_model(config, tokenizer.vocabulary_size(), 2)
    before = {w.path: w.numpy() for w in model.weights}
    transferred = classifier.transfer_encoder(lm, model)
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
    texts_ = ["the cat sat", "the dog ran", "a cat and a dog", "the end"] * 2
    train = labelled(texts_, ["pos", "neg"] * 4)
    fitted = []
    monkeypatch.setattr(keras.Model, "fit", lambda model, *a, **k: fitted.append(model))  # the model before training
    config = sentiment_config(**{"training.epochs": 1})
    run = runs.train(
        "sentiment",
        config,
        Splits(train, train),
        tmp_path / "run",
        options={"init_encoder_from": cli_run[0]},
        verbose=0,
        say=quiet,
    )
    assert len(fitted) == 1
    model = fitted[0]
    tokenizer_used = Preprocessing.load(run.path, sentiment.SentimentTask.tokenizer_folders).tokenizers["text"]
    assert tokenizer_used.vocabulary == tokenizer.vocabulary
    saved = config_lib.resolve(sentiment.SentimentConfig, [tmp_path / "run" / "config.yaml"])
    assert (saved.model.embedding_dim, saved.model.units) == (8, 12)  # the language model's sizes, not 4 and 4
    assert json.loads((run.path / "run.json").read_text())["options"] == {"init_encoder_from": str(cli_run[0])}
    np.testing.assert_array_equal(model.get_layer("embedding").get_weights()[0], lm.embedding.get_weights()[0])
    forward = model.get_layer("bidirectional_0").forward_layer
    for a, b in zip(forward.get_weights(), lm.grus[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RunError, match="is a sentiment run; a language-model run is needed here"):
        runs.train(
            "sentiment",
            config,
            Splits(train, train),
            tmp_path / "other",
            options={"init_encoder_from": run.path},
            verbose=0,
            say=quiet,
        )
    assert not (tmp_path / "other").exists()


def test_the_command_line_starts_from_one_run_only(cli_run, tmp_path):
    table = write_table(tmp_path / "train.csv", ["the cat sat", "the dog ran"] * 4, column="text")
    code, _, err = run_cli(
        ["train", "sentiment", "--train-file", table, "--init-from", cli_run[0], "--init-encoder-from", cli_run[0]]
        + ["--run-dir", tmp_path / "run"]
    )
    assert code == 2 and "not allowed with argument" in err
    assert not (tmp_path / "run").exists()


def test_starting_from_a_sentiment_run_and_a_language_model_at_once_is_refused(cli_run, tmp_path):
    train = labelled(["the cat sat", "the dog ran"] * 4, ["pos", "neg"] * 4)
    config = sentiment_config(**{"training.epochs": 1})
    first = runs.train("sentiment", config, Splits(train, train), tmp_path / "first", verbose=0, say=quiet)
    with pytest.raises(UsageError, match=r"--init-from.*--init-encoder-from.*not both"):
        runs.train(
            "sentiment",
            config,
            Splits(train, train),
            tmp_path / "other",
            options={"init_from": first.path, "init_encoder_from": cli_run[0]},
            verbose=0,
            say=quiet,
        )
    assert not (tmp_path / "other").exists()


def test_first_words_keeps_whole_lines_within_the_word_budget():
    lines = ["a b", "c d e", "f", "g h"]
    assert first_words(lines, 5) == ["a b", "c d e"]
    assert first_words(lines, 6) == ["a b", "c d e", "f"]
    assert first_words(lines, 1) == []
    assert first_words(lines, None) == lines


def test_pretraining_on_the_classifiers_texts_respects_the_word_budget(tmp_path):
    train = labelled(TRAIN[:9], ["pos", "neg"] * 4 + ["pos"])
    validation = labelled(TRAIN[9:], ["pos"])
    lm_run = sentiment.pretrain_language_model(
        lm_config("training.epochs=1"), Splits(train, validation), tmp_path / "lm", max_words=12, verbose=0
    )
    assert lm_run.task is LM and lm_run.finished
    # the first two texts hold 12 words; the stream has one </s> in front and one after each line
    assert json.loads((lm_run.path / "training.json").read_text())["train_tokens"] == 1 + 12 + 2
    config = sentiment_config(**{"training.epochs": 1})
    runs.train(
        "sentiment",
        config,
        Splits(train, validation),
        tmp_path / "classifier",
        options={"init_encoder_from": lm_run.path},
        verbose=0,
        say=quiet,
    )
    lm_tokenizer = lm_run.load().preprocessing.tokenizers["text"]
    tokenizer = runs.Run.open(tmp_path / "classifier").load().preprocessing.tokenizers["text"]
    assert tokenizer.vocabulary == lm_tokenizer.vocabulary  # learnt from the two texts only
    assert set(tokenizer.vocabulary) >= {"the", "cat", "dog", "log"}
    assert "ran" not in tokenizer.vocabulary  # only in later texts


def test_pretraining_also_reads_the_training_split_of_other_datasets(tmp_path, monkeypatch):
    train = labelled(TRAIN[:4], ["pos", "neg"] * 2)
    validation = labelled(TRAIN[9:], ["pos"])
    other = ["zebras graze", "zebras run far"]
    asked = []

    def load(name, split, data_dir=None):
        asked.append((name, split))
        return pd.DataFrame({"text": other})

    monkeypatch.setattr(datasets, "load", load)
    lm_run = sentiment.pretrain_language_model(
        lm_config("training.epochs=1"), Splits(train, validation), tmp_path / "lm", also=["other"], verbose=0
    )
    assert asked == [("other", "train")]  # never a test split
    words = sum(len(t.split()) for t in TRAIN[:4] + other)
    assert json.loads((lm_run.path / "training.json").read_text())["train_tokens"] == 1 + words + len(TRAIN[:4] + other)
    assert "zebras" in lm_run.load().preprocessing.tokenizers["text"].vocabulary


def test_pretraining_validates_on_the_first_words_of_the_validation_texts(tmp_path, monkeypatch):
    train = labelled(TRAIN[:4], ["pos", "neg"] * 2)
    validation = labelled(["a b c", "d e", "f g h i"], ["pos", "neg", "pos"])
    corpora = []
    monkeypatch.setattr(runs, "train", lambda task, config, data, run_dir, **options: corpora.append((task, data)))
    for budget, expected in [(5, ["a b c", "d e"]), (2, ["a b c"])]:  # never empty: one text at least
        monkeypatch.setattr(sentiment, "PRETRAIN_VALIDATION_WORDS", budget)
        sentiment.pretrain_language_model(lm_config(), Splits(train, validation), tmp_path / "lm", verbose=0)
        task, data = corpora[-1]
        assert task == "language-model" and isinstance(data, Splits)
        assert data.validation == expected
        assert data.train == TRAIN[:4]
        assert data.test is None  # no test split is read


GENERATE = {"prompt": ["the"], "max_new_tokens": 3, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("temperature", float("nan"), "temperature must be >= 0"),
        ("temperature", -1.0, "temperature must be >= 0"),
        ("top_p", float("nan"), r"top_p must be in \(0, 1\]"),
        ("top_p", -1.0, r"top_p must be in \(0, 1\]"),
        ("top_k", -1, "top_k must be >= 0"),
        ("max_new_tokens", -1, r"max_new_tokens must be in \[1, 1024\]"),
        ("max_new_tokens", 1025, r"max_new_tokens must be in \[1, 1024\]"),
    ],
)
def test_generation_options_out_of_range_are_refused_by_the_export_and_the_api(exported, option, value, message):
    export = runs.load(exported[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call_signature(export.signatures["generate"], **{**GENERATE, option: value})
    with pytest.raises(UsageError, match=message):
        export.predict(["the"], **{option: value})


def test_beam_search_with_no_new_tokens_is_refused_by_the_export(exported):
    beam = runs.load(exported[0]).signatures["beam_search"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_new_tokens must be in \[1, 1024\]"):
        call_signature(beam, **{**BEAM, "max_new_tokens": -1})
    for width in (0, 65):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"beam_width must be in \[1, 64\]"):
            call_signature(beam, **{**BEAM, "beam_width": width})
    for option, value, message in [
        ("length_penalty", -0.5, r"length_penalty must be >= 0"),
        ("length_penalty", float("nan"), r"length_penalty must be >= 0"),
        ("min_new_tokens", -1, r"min_new_tokens must be in \[0, 1024\]"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            call_signature(beam, **{**BEAM, option: value})
        with pytest.raises(UsageError, match=message):
            runs.load(exported[0]).predict(["the"], beam_width=2, **{option: value})
    with pytest.raises(UsageError, match=r"min_new_tokens is a beam search setting: give beam_width too"):
        runs.load(exported[0]).predict(["the"], min_new_tokens=3)


def test_an_export_whose_beam_search_predates_its_length_settings_still_searches(exported):
    """An export written before `length_penalty` and `min_new_tokens` existed has a three-input `beam_search`
    and no such defaults: `predict` calls it with the three, and refuses the settings it cannot take."""
    signatures = runs.load(exported[0]).signatures
    calls = []

    def old_beam_search(prompt, max_new_tokens, beam_width):  # any other input is a TypeError
        calls.append(int(beam_width))
        return signatures["beam_search"](
            prompt=prompt,
            max_new_tokens=max_new_tokens,
            beam_width=beam_width,
            length_penalty=tf.constant(0.0),
            min_new_tokens=tf.constant(0),
        )

    def old_defaults():
        defaults = signatures["generation_defaults"]()
        return {key: defaults[key] for key in ("max_new_tokens", "temperature", "top_k", "top_p")}

    old = {**signatures, "beam_search": old_beam_search, "generation_defaults": old_defaults}
    task = tasks.get("language-model")
    expected = runs.load(exported[0]).predict(["the cat"], max_new_tokens=4, beam_width=2)
    assert task.predict(old, ["the cat"], max_new_tokens=4, beam_width=2) == expected
    assert calls == [2]
    with pytest.raises(UsageError, match="This export's beam search takes no length_penalty; export the run again"):
        task.predict(old, ["the cat"], beam_width=2, length_penalty=1.0)


BEAM = {"prompt": ["the"], "max_new_tokens": 2, "beam_width": 2, "length_penalty": 0.0, "min_new_tokens": 0}


def test_a_prompt_is_read_up_to_its_last_max_prompt_tokens(exported):
    """A 60,000-word prompt is answered from its last 1,024 tokens (generation.max_prompt_tokens), exactly as
    if those were the whole prompt, and in one pass of no more memory than that."""
    export = runs.load(exported[0])
    tail = ["the"] * 1022 + ["cat", "sat"]
    long = " ".join(["dog"] * 60_000 + tail)
    outputs = export.predict([long, " ".join(tail)], max_new_tokens=6, temperature=0.0)
    assert outputs[0] == outputs[1]
    assert export.predict([" ".join(["dog"] + tail)], max_new_tokens=6, temperature=0.0)[0] == outputs[1]
