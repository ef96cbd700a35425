"""Translation on tiny models: the smoothed loss by hand, teacher forcing
against step-by-step decoding, the encoder-decoder's hooks (a copy
distribution, a coverage loss) against hand computations, the pair batches,
beam search scores, a model overfit on a handful of pairs (translation, the
task contract of tests/harness.py, export in a fresh process, attention
plots, evaluation, exact resume), and the data readers' errors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from harness import call_export, call_signature, run_task_test, train_tiny

from nlptool import config as config_lib
from nlptool import runs, training
from nlptool import tasks as task_registry
from nlptool.data import datasets
from nlptool.data.pairs import encode, pair_dataset
from nlptool.errors import DataError, RunError, UsageError
from nlptool.export import ExportError
from nlptool.models.encoder_decoder import AttentionEncoderDecoder, build_model
from nlptool.models.losses import smoothed_nll
from nlptool.models.seq2seq_serving import EncoderDecoderServing
from nlptool.tasks import seq2seq
from nlptool.tasks.base import DataSource, Splits
from nlptool.tasks.translation import TranslationConfig
from nlptool.tokenizers import END_ID, PAD_ID, START_ID

TASK = task_registry.get("translation")

# every side at least 4 words, so that corpus BLEU (up to 4-grams) is defined
PAIRS = [
    ("ein hund läuft schnell", "a dog runs fast"),
    ("eine katze schläft hier", "a cat sleeps here"),
    ("der mann isst brot", "the man eats bread"),
    ("die frau liest viel", "the woman reads a lot"),
    ("ein kind spielt draußen", "a child plays outside"),
    ("zwei hunde laufen weg", "two dogs run away"),
]
SOURCES = [s for s, _ in PAIRS]
TARGETS = [t for _, t in PAIRS]
TINY = [
    "tokenizer.kind=word",
    "tokenizer.vocab_size=40",
    "model.embedding_dim=16",
    "model.encoder_units=16",
    "model.decoder_units=32",
    "model.attention_units=16",
    "model.dropout=0.1",  # the dropout masks must resume exactly too
    "training.batch_size=6",
    "training.learning_rate=0.02",
    "training.label_smoothing=0.0",
    "training.early_stopping_patience=100",
    "training.epochs=20",
    "decoding.beam_width=3",
]
BANNED = [PAD_ID, START_ID]  # decode_step never proposes these


def all_signature_calls(sources):
    """A call of each signature but serving_default, for tests/harness.py's check of both loaders."""
    strings = (list(sources), "string")
    return [
        (
            "beam_search",
            {"source": strings, "beam_width": (3, "int32"), "n_best": (2, "int32"), "length_penalty": (0.6, "float32")},
        ),
        ("greedy", {"source": strings}),
        ("attention", {"source": strings, "target": ([t for t in TARGETS[: len(sources)]], "string")}),
        ("decoding_defaults", {}),
    ]


def tr_config(*overrides):
    return config_lib.resolve(TranslationConfig, [], [*TINY, *overrides])


def pairs_frame(pairs):
    return pd.DataFrame(list(pairs), columns=["source", "target"])


def corpus_of(pairs, copies=4):
    """The pairs `copies` times over for training, once for validation and test."""
    return Splits(pairs_frame(pairs * copies), pairs_frame(pairs), pairs_frame(pairs))


def tokenizers_of(config, splits):
    preprocessing = TASK.prepare(config, splits)[1]
    return preprocessing.tokenizers["source"], preprocessing.tokenizers["target"]


def unpad(row):
    row = np.asarray(row)
    return row[row != PAD_ID].tolist()


def allowed(vocabulary_size):
    return np.array([i for i in range(vocabulary_size) if i not in BANNED])


def log_softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


@pytest.fixture(scope="module")
def tokenizers():
    return tokenizers_of(tr_config(), corpus_of(PAIRS))


class LastWeights(keras.callbacks.Callback):
    """Keeps the model's weights at the end of the latest epoch (before
    EarlyStopping restores the best) and at the end of training."""

    def __init__(self, store):
        super().__init__()
        self.store = store

    def on_epoch_end(self, epoch, logs=None):
        self.store["epoch"], self.store["weights"] = epoch, self.model.get_weights()

    def on_train_end(self, logs=None):
        self.store["final"] = self.model.get_weights()


def recording_last_weights(monkeypatch, store):
    """Make every training run record its last epoch's weights into `store`."""
    real = training.callbacks
    monkeypatch.setattr(training, "callbacks", lambda *args, **kwargs: real(*args, **kwargs) + [LastWeights(store)])


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """A run trained to reproduce PAIRS exactly, through the task contract of
    tests/harness.py (config and .keras round trips, export, the same
    predictions from the run, the export and a process without nlptool):
    (Run, config, {"epoch", "weights"} at the end of the last epoch, "final" weights)."""
    root = tmp_path_factory.mktemp("overfit")
    last = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        recording_last_weights(monkeypatch, last)
        run = run_task_test(
            TASK,
            corpus_of(PAIRS),
            TINY,
            SOURCES,
            root,
            predict_options={"n_best": 3},
            signature_calls=all_signature_calls(SOURCES),
        )
    return run, tr_config(), last


@pytest.fixture(scope="module")
def served(overfit):
    """The serving signatures of the overfit run, built in process (the module kept alive with them)."""
    module, signatures = TASK.serving_module(overfit[0].load())
    return signatures, module


@pytest.fixture(scope="module")
def exported(overfit):
    return overfit[0].path.parent / "export"  # written by run_task_test


# === 1. the loss ===


def hand_losses(logits, targets, eps):
    log_probs = log_softmax(logits)
    loss = nll = 0.0
    count = 0
    for b, t in np.ndindex(targets.shape):
        if targets[b, t] == PAD_ID:
            continue
        token_nll = -log_probs[b, t, targets[b, t]]
        nll += token_nll
        loss += (1 - eps) * token_nll + eps * -log_probs[b, t].mean()
        count += 1
    return loss, nll, count


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_smoothed_nll_matches_a_hand_computation(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 7)).astype(np.float32) * 3
    targets = np.array([[4, 5, 3, 0], [6, 3, 0, 0], [1, 2, 4, 3]], np.int32)
    loss, nll, count = (v.numpy() for v in smoothed_nll(tf.constant(logits), tf.constant(targets), eps))
    expected = hand_losses(logits.astype(np.float64), targets, eps)
    np.testing.assert_allclose([loss, nll, count], expected, rtol=1e-5)
    assert count == 9
    if eps == 0.0:
        assert loss == nll
    else:
        assert loss != pytest.approx(nll)
    # padded targets contribute nothing, whatever the logits at their positions
    changed = logits.copy()
    changed[targets == PAD_ID] = rng.normal(size=changed[targets == PAD_ID].shape) * 50
    again = [v.numpy() for v in smoothed_nll(tf.constant(changed), tf.constant(targets), eps)]
    np.testing.assert_array_equal(again, [loss, nll, count])


def test_smoothed_nll_of_uniform_logits_is_log_vocabulary_for_any_smoothing():
    targets = tf.constant([[5, 3, 0]])
    for eps in (0.0, 0.1, 0.5):
        loss, nll, count = smoothed_nll(tf.zeros((1, 3, 11)), targets, eps)
        assert count.numpy() == 2
        np.testing.assert_allclose([loss.numpy(), nll.numpy()], [2 * math.log(11)] * 2, rtol=1e-6)


# === 2. teacher forcing == step-by-step decoding ===


def tiny_model(tie_embeddings=True, source_vocabulary=20, target_vocabulary=23, seed=3, cls=None, dropout=0.3):
    keras.utils.set_random_seed(seed)
    model = (cls or AttentionEncoderDecoder)(
        source_vocabulary,
        target_vocabulary,
        embedding_dim=8,
        encoder_units=8,
        encoder_layers=2,
        decoder_units=12,
        attention_units=10,
        dropout=dropout,  # inactive outside training
        tie_embeddings=tie_embeddings,
        seed=seed,
    )
    model.build()
    return model


def scrambled(model, seed=11):
    """`model` with large random weights, so that the attention is far from
    uniform (a fresh model's small embeddings make it nearly so)."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(scale=0.6, size=variable.shape).astype(np.float32))
    return model


SOURCE_BATCH = np.array([[5, 6, 7, 8, 3], [9, 3, 0, 0, 0], [10, 11, 12, 3, 0]], np.int32)
TARGET_BATCH = np.array([[2, 4, 5, 6], [2, 7, 0, 0], [2, 8, 9, 10]], np.int32)
TARGET_OUTPUT = np.array([[4, 5, 6, 3], [7, 3, 0, 0], [8, 9, 10, 3]], np.int32)  # shifted, with </s>


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_teacher_forced_logits_equal_step_by_step_decoding(tie_embeddings):
    model = tiny_model(tie_embeddings)
    source, target_input = tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)
    logits, weights = (t.numpy() for t in model((source, target_input)))
    assert logits.shape == (3, 4, 23) and weights.shape == (3, 4, 5)

    memory, keys, mask, state = model.encode(source)
    keep = allowed(23)
    for t in range(TARGET_BATCH.shape[1]):
        step_logits, state, step_weights = model.decode_step(target_input[:, t], state, memory, keys, mask)
        step_logits = step_logits.numpy()
        np.testing.assert_allclose(step_logits[:, keep], logits[:, t, keep], atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(step_weights.numpy(), weights[:, t], atol=1e-6, err_msg=f"step {t}")
        assert (step_logits[:, BANNED] == -1e9).all()

    # attention: a distribution over the real source tokens only
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    padded = np.broadcast_to((SOURCE_BATCH == PAD_ID)[:, None, :], weights.shape)
    assert (weights[padded] == 0.0).all()
    assert (weights[~padded] > 0.0).all()


def test_padding_does_not_change_a_sentence_s_logits():
    """A sentence decoded in a padded batch gets the numbers it gets alone."""
    model = tiny_model(True)
    logits, weights = model((tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)))
    for row in range(len(SOURCE_BATCH)):
        source = [unpad(SOURCE_BATCH[row])]
        target = [unpad(TARGET_BATCH[row])]
        alone_logits, alone_weights = model((tf.constant(source), tf.constant(target)))
        n, m = len(target[0]), len(source[0])
        np.testing.assert_allclose(alone_logits.numpy()[0], logits.numpy()[row, :n], atol=1e-5)
        np.testing.assert_allclose(alone_weights.numpy()[0], weights.numpy()[row, :n, :m], atol=1e-6)


# === 3. the encoder-decoder's hooks ===

COPY_SHARE = 0.5


class CopyMix(AttentionEncoderDecoder):
    """p(y) = 0.5 softmax(logits)[y] + 0.5 sum_{j: x_j = y} alpha_j: half the
    mass copied from the source through the attention (source and target
    share their ids)."""

    def output_scores(self, logits, step):
        attention, source = step["attention"], step["source"]
        one_hot = tf.one_hot(source, self.target_vocabulary_size, dtype=attention.dtype)  # (batch, source, vocabulary)
        if attention.shape.rank == 2:  # decode_step: (batch, source_len)
            copied = tf.matmul(attention[:, None, :], one_hot)[:, 0]
        else:  # teacher forcing: (batch, target_len, source_len)
            copied = tf.matmul(attention, one_hot)
        return tf.math.log((1 - COPY_SHARE) * tf.nn.softmax(logits) + COPY_SHARE * copied)


def hand_copy_log_probs(logits, weights, source):
    """log(0.5 softmax(logits) + 0.5 attention scattered onto the source ids), in float64 NumPy."""
    logits, weights = np.asarray(logits, np.float64), np.asarray(weights, np.float64)
    probs = np.exp(log_softmax(logits))
    copied = np.zeros_like(probs)
    for b, t, j in np.ndindex(weights.shape):
        copied[b, t, source[b, j]] += weights[b, t, j]
    return np.log((1 - COPY_SHARE) * probs + COPY_SHARE * copied)


def test_an_output_scores_hook_mixes_a_copy_distribution_into_training_and_decoding():
    plain = scrambled(tiny_model(True))
    copying = tiny_model(True, cls=CopyMix)
    copying.set_weights(plain.get_weights())
    source, target_input = tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)
    logits, weights = (t.numpy() for t in plain((source, target_input)))
    expected = hand_copy_log_probs(logits, weights, SOURCE_BATCH)
    np.testing.assert_allclose(np.exp(expected).sum(-1), 1.0, atol=1e-6)  # a distribution

    # teacher forcing: the hook's scores, with the attention unchanged
    scores, copy_weights = (t.numpy() for t in copying((source, target_input)))
    np.testing.assert_allclose(copy_weights, weights, atol=1e-7)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # not vacuous: the copy moves the source ids' scores well away from the plain log-softmax
    assert np.abs(expected - log_softmax(logits)).max() > 0.5

    # decode_step: the same scores step by step, given the source ids
    memory, keys, mask, state = copying.encode(source)
    keep = allowed(23)
    for t in range(TARGET_BATCH.shape[1]):
        step_scores, state, step_weights = copying.decode_step(
            target_input[:, t], state, memory, keys, mask, source=source
        )
        step_scores = step_scores.numpy()
        np.testing.assert_allclose(step_scores[:, keep], expected[:, t, keep], atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(step_weights.numpy(), weights[:, t], atol=1e-6, err_msg=f"step {t}")
        assert (step_scores[:, BANNED] == -1e9).all()

    # the training loss and the perplexity read the hook's distribution
    logs = copying.test_step(((source, target_input), tf.constant(TARGET_OUTPUT)))
    real = TARGET_OUTPUT != PAD_ID
    hand_nll = -np.take_along_axis(expected, TARGET_OUTPUT[..., None], -1)[..., 0][real].mean()
    assert float(logs["nll"]) == pytest.approx(hand_nll, rel=1e-5)
    assert float(logs["perplexity"]) == pytest.approx(math.exp(hand_nll), rel=1e-5)


def teacher_forced_log_prob(model, source, tokens):
    """log P(tokens | source ids) under the model run by `call`, with <pad> and <s> banned as in decode_step."""
    target_input = [START_ID] + tokens[:-1]
    scores, _ = model((tf.constant([source]), tf.constant([target_input])))
    scores = scores.numpy()[0].astype(np.float64)
    scores[:, BANNED] = -np.inf
    top = scores.max(-1, keepdims=True)
    log_probs = scores - top - np.log(np.exp(scores - top).sum(-1, keepdims=True))
    return float(sum(log_probs[t, token] for t, token in enumerate(tokens)))


def test_the_serving_beam_search_decodes_with_the_output_scores_hook():
    """Beam search through EncoderDecoderServing hands the (tiled) source ids
    to the hook: its scores are the copy model's teacher-forced log-probabilities."""
    config = tr_config("tokenizer.shared=true")
    source_tokenizer, target_tokenizer = tokenizers_of(config, corpus_of(PAIRS))
    assert source_tokenizer is target_tokenizer  # one vocabulary: a copied id is the same word
    vocabulary = target_tokenizer.vocabulary_size()
    keras.utils.set_random_seed(7)
    plain = build_model(config, vocabulary, vocabulary)
    copying = CopyMix.from_config(plain.get_config())
    copying.build()
    copying.set_weights(plain.get_weights())
    module = EncoderDecoderServing(source_tokenizer, target_tokenizer, copying, config.decoding)
    plain_module = EncoderDecoderServing(source_tokenizer, target_tokenizer, plain, config.decoding)
    width, n_best = 3, 3
    out = beam(module, DECODE_SOURCES, width, n_best, 0.6)
    for row, text in enumerate(DECODE_SOURCES):
        ids = source_ids(module, text)
        for k in range(n_best):
            length = int(out["lengths"][row, k])
            tokens = out["ids"][row, k][:length].tolist()
            expected = teacher_forced_log_prob(copying, ids, tokens) / ((5 + length) / 6) ** 0.6
            assert out["score"][row, k] == pytest.approx(expected, abs=1e-4), (text, k)
    greedy = {k: v.numpy() for k, v in module.greedy(tf.constant(DECODE_SOURCES)).items()}
    one = beam(module, DECODE_SOURCES, 1, 1, 0.0)
    np.testing.assert_array_equal(one["text"][:, 0], greedy["text"])
    np.testing.assert_allclose(one["score"][:, 0], greedy["score"], rtol=1e-6)
    # and the hook changes the decoding: the plain model scores the same hypotheses otherwise
    assert not np.allclose(beam(plain_module, DECODE_SOURCES, width, n_best, 0.6)["score"], out["score"], atol=1e-3)


COVERAGE_WEIGHT = 0.7


def coverage(attention, targets):
    """The coverage loss of See et al. (2017), scaled: COVERAGE_WEIGHT times
    the mean over real target tokens of sum_j min(alpha_tj, sum_{t' < t} alpha_t'j)."""
    covered = tf.cumsum(attention, axis=1, exclusive=True)
    per_token = tf.reduce_sum(tf.minimum(attention, covered), axis=-1)
    real = tf.cast(tf.not_equal(targets, PAD_ID), attention.dtype)
    return COVERAGE_WEIGHT * tf.reduce_sum(per_token * real) / tf.reduce_sum(real)


def hand_coverage(weights, targets):
    weights = np.asarray(weights, np.float64)
    total, count = 0.0, 0
    for b, t in np.ndindex(targets.shape):
        if targets[b, t] != PAD_ID:
            covered = weights[b, :t].sum(0)
            total += np.minimum(weights[b, t], covered).sum()
            count += 1
    return COVERAGE_WEIGHT * total / count


class Coverage(AttentionEncoderDecoder):
    extra_loss_names = ("coverage_loss",)

    def extra_losses(self, outputs, targets):
        return {"coverage_loss": coverage(outputs["attention"], targets)}


LEARNING_RATE = 0.5


def one_sgd_step(model, batch, validate=False):
    """Fit `model` on one batch with plain SGD; returns the logs of that epoch."""
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=False)
    data = tf.data.Dataset.from_tensors(batch)
    history = model.fit(data, validation_data=data if validate else None, epochs=1, shuffle=False, verbose=0)
    return {name: values[0] for name, values in history.history.items()}


def test_an_extra_losses_hook_is_logged_and_trained_on():
    batch = ((tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)), tf.constant(TARGET_OUTPUT))
    plain = scrambled(tiny_model(True, dropout=0.0))  # no dropout: training sees the attention computed here
    covered = tiny_model(True, cls=Coverage, dropout=0.0)
    covered.set_weights(plain.get_weights())
    assert [m.name for m in covered.metrics] == ["smoothed_loss", "nll", "coverage_loss"]
    _, weights = plain(batch[0])
    expected = hand_coverage(weights.numpy(), TARGET_OUTPUT)
    assert expected > 0.05  # the decoder attends to some source token twice
    with tf.GradientTape() as tape:
        term = coverage(covered(batch[0], training=True)[1], batch[1])
    gradients = [
        None if g is None else tf.convert_to_tensor(g) for g in tape.gradient(term, covered.trainable_variables)
    ]
    assert float(term) == pytest.approx(expected, rel=1e-5)
    before = [v.numpy() for v in covered.trainable_variables]

    plain_logs, covered_logs = one_sgd_step(plain, batch), one_sgd_step(covered, batch, validate=True)
    # the logged term is the one of the step's forward pass; the NLL is untouched by it
    assert covered_logs["coverage_loss"] == pytest.approx(expected, rel=1e-5)
    assert "coverage_loss" not in plain_logs
    for name in ("nll", "perplexity"):
        assert covered_logs[name] == pytest.approx(plain_logs[name], rel=1e-6), name
    # validation logs it too, from the updated weights
    _, after_weights = covered(batch[0])
    assert covered_logs["val_coverage_loss"] == pytest.approx(hand_coverage(after_weights, TARGET_OUTPUT), rel=1e-5)

    # SGD: w' = w - rate * (gradient of the NLL + gradient of the term), so the
    # two models' weights differ by rate times the term's gradient, and only there
    moved = 0
    for old, gradient, a, b in zip(before, gradients, plain.trainable_variables, covered.trainable_variables):
        assert np.array_equal(a.numpy(), b.numpy()) == (gradient is None), a.path
        if gradient is not None:
            np.testing.assert_allclose(
                (a.numpy() - b.numpy()) / LEARNING_RATE, gradient.numpy(), atol=2e-5, err_msg=a.path
            )
            moved += int(np.abs(gradient.numpy()).max() > 1e-4)
        assert not np.array_equal(old, b.numpy()), a.path  # every weight trained
    assert moved >= 5  # the encoder's, the attention's and the decoder's weights


class ExplicitDefaults(AttentionEncoderDecoder):
    """The hooks overridden by calls to the defaults."""

    def output_scores(self, logits, step):
        return super().output_scores(logits, step)

    def extra_losses(self, outputs, targets):
        return super().extra_losses(outputs, targets)


def test_the_default_hooks_leave_the_numbers_of_translation_bit_identical():
    # translation builds the plain encoder-decoder: no hook, no extra metric
    preprocessing = TASK.prepare(tr_config(), corpus_of(PAIRS))[1]
    model = TASK.build_model(tr_config(), preprocessing)
    assert type(model) is AttentionEncoderDecoder and model.extra_loss_names == ()
    assert [m.name for m in model.metrics] == ["smoothed_loss", "nll"]

    plain = scrambled(tiny_model(True, dropout=0.0))
    source, target_input = tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)
    scores, weights = plain((source, target_input))
    # the scores are the deep output's logits, bit for bit: the teacher-forced pass by hand, without the hooks
    memory, keys, mask, state = plain.encode(source)
    embedded = plain.target_embedding(target_input)
    states, contexts, alignments = [], [], []
    for t in range(TARGET_BATCH.shape[1]):
        state, _, context, alpha = plain._recur(embedded[:, t], state, memory, keys, mask)
        states.append(state), contexts.append(context), alignments.append(alpha)
    by_hand = plain._logits(tf.stack(states, 1), tf.stack(contexts, 1), embedded)
    np.testing.assert_array_equal(scores.numpy(), by_hand.numpy())
    np.testing.assert_array_equal(weights.numpy(), tf.stack(alignments, 1).numpy())
    step = {"attention": weights, "source": source}
    assert plain.output_scores(scores, step) is scores
    assert plain.extra_losses({"scores": scores, "attention": weights, "source": source}, TARGET_OUTPUT) == {}

    # decode_step: the step's logits with <pad> and <s> banned, bit for bit
    memory, keys, mask, state = plain.encode(source)
    tokens = target_input[:, 0]
    step_scores, _, _ = plain.decode_step(tokens, state, memory, keys, mask)
    state, _, context, _ = plain._recur(plain.target_embedding(tokens), state, memory, keys, mask)
    logits = plain._logits(state, context, plain.target_embedding(tokens)).numpy()
    logits[:, BANNED] = -1e9
    np.testing.assert_array_equal(step_scores.numpy(), logits)

    # training: a plain model and one whose hooks call the defaults take the same step, bit for bit,
    # and that step is the one of the label-smoothed loss alone
    batch = ((source, target_input), tf.constant(TARGET_OUTPUT))
    explicit = tiny_model(True, cls=ExplicitDefaults, dropout=0.0)
    explicit.set_weights(plain.get_weights())
    with tf.GradientTape() as tape:
        loss_sum, _, count = smoothed_nll(plain(batch[0], training=True)[0], batch[1])
        loss = loss_sum / count
    expected = [
        v.numpy() - LEARNING_RATE * tf.convert_to_tensor(g).numpy()
        for v, g in zip(plain.trainable_variables, tape.gradient(loss, plain.trainable_variables))
    ]
    plain_logs, explicit_logs = one_sgd_step(plain, batch), one_sgd_step(explicit, batch)
    assert plain_logs == explicit_logs and sorted(plain_logs) == ["loss", "nll", "perplexity"]
    assert plain_logs["loss"] == pytest.approx(float(loss), rel=1e-6)
    for a, b, want in zip(plain.trainable_variables, explicit.trainable_variables, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
        np.testing.assert_allclose(a.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_train_on_batch_takes_the_step_of_fit():
    """Keras hands train_step a sample weight (None) beside x and y outside fit; the step is the same."""
    batch = ((tf.constant(SOURCE_BATCH), tf.constant(TARGET_BATCH)), tf.constant(TARGET_OUTPUT))
    fitted = scrambled(tiny_model(True, dropout=0.0))
    stepped = tiny_model(True, dropout=0.0)
    stepped.set_weights(fitted.get_weights())
    fit_logs = one_sgd_step(fitted, batch)
    stepped.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=False)
    logs = stepped.train_on_batch(*batch, return_dict=True)
    assert logs == pytest.approx(fit_logs, rel=1e-6)
    assert_same_weights(stepped.get_weights(), fitted.get_weights())


# === 4. pair batches ===

# sides of 1 to 6 words; the sources are distinct, so a source names its pair
VARIED = [
    ("a", "x y"),
    ("b c", "y"),
    ("c d e", "z x y"),
    ("d e f g", "x y z w"),
    ("e f g h i", "y z"),
    ("f g h i j k", "z w x y z w"),
    ("g", "w w w w w"),
    ("h i", "x"),
    ("i j k", "y y y y"),
    ("j k a b", "z"),
    ("k a b c d e", "w x"),
    ("a b", "x y z w x y"),
]


@pytest.fixture(scope="module")
def varied_tokenizers():
    return tokenizers_of(tr_config(), corpus_of(VARIED, copies=1))


def batch_rows(dataset):
    """Every example of `dataset` as (source, target input, target output) id lists, in order."""
    rows = []
    for (source, target_input), target_output in dataset:
        assert source.shape[0] == target_input.shape[0] == target_output.shape[0]
        for s, t_in, t_out in zip(source.numpy(), target_input.numpy(), target_output.numpy()):
            rows.append((unpad(s), unpad(t_in), unpad(t_out)))
    return rows


def test_pair_dataset_adds_end_and_start_tokens_and_keeps_every_pair_once(varied_tokenizers):
    source_tokenizer, target_tokenizer = varied_tokenizers
    frame = pairs_frame(VARIED)
    sources = encode(source_tokenizer, frame["source"].tolist()).to_list()
    targets = encode(target_tokenizer, frame["target"].tolist()).to_list()
    expected = sorted((tuple(s), tuple(t)) for s, t in zip(sources, targets))
    for shuffle in (False, True):
        rows = batch_rows(pair_dataset(source_tokenizer, target_tokenizer, frame, 3, shuffle=shuffle, seed=1))
        for source, target_input, target_output in rows:
            assert source[-1] == END_ID and END_ID not in source[:-1]
            assert target_input[0] == START_ID and START_ID not in target_input[1:]
            assert target_output == target_input[1:] + [END_ID]
        assert sorted((tuple(s[:-1]), tuple(t_out[:-1])) for s, _, t_out in rows) == expected


def test_pair_dataset_pads_with_zeros_on_the_right(varied_tokenizers):
    dataset = pair_dataset(*varied_tokenizers, pairs_frame(VARIED), 4)
    for (source, target_input), target_output in dataset:
        for tensor in (source, target_input, target_output):
            ids = tensor.numpy()
            for row in ids:
                real = int((row != PAD_ID).sum())
                assert (row[:real] != PAD_ID).all() and (row[real:] == PAD_ID).all()
        # input and output of a row are equally long
        np.testing.assert_array_equal((target_input.numpy() != 0).sum(1), (target_output.numpy() != 0).sum(1))


def test_pair_dataset_max_length_drops_the_long_pairs(varied_tokenizers):
    frame = pairs_frame(VARIED)
    max_length = 5
    rows = batch_rows(pair_dataset(*varied_tokenizers, frame, 2, max_length=max_length))
    kept = sorted(tuple(source) for source, _, _ in rows)
    # the model's sequences (with </s> or <s>) hold at most max_length tokens
    source_tokenizer, target_tokenizer = varied_tokenizers
    sources = encode(source_tokenizer, frame["source"].tolist()).to_list()
    targets = encode(target_tokenizer, frame["target"].tolist()).to_list()
    expected = sorted(
        tuple(s) + (END_ID,) for s, t in zip(sources, targets) if len(s) + 1 <= max_length and len(t) + 1 <= max_length
    )
    assert kept == expected
    assert 0 < len(kept) < len(VARIED) - 2
    with pytest.raises(DataError, match="No sentence pair of 12"):
        pair_dataset(*varied_tokenizers, frame, 2, max_length=1)


def test_shuffled_order_is_a_function_of_seed_and_epoch(varied_tokenizers):
    frame = pairs_frame(VARIED)
    epoch = tf.Variable(0, dtype=tf.int64)

    def sources(dataset):
        return [source for source, _, _ in batch_rows(dataset)]

    def order(seed, epoch_value, shuffle=True):
        variable = tf.Variable(epoch_value, dtype=tf.int64)
        return sources(pair_dataset(*varied_tokenizers, frame, 2, shuffle=shuffle, seed=seed, epoch=variable))

    dataset = pair_dataset(*varied_tokenizers, frame, 2, shuffle=True, seed=7, epoch=epoch)
    first = sources(dataset)
    assert sources(dataset) == first  # read again: the same epoch
    assert order(7, 0) == first  # a fresh pipeline, the same epoch value
    epoch.assign(1)
    second = sources(dataset)  # the same pipeline reads the variable anew
    assert second != first and sorted(second) == sorted(first)
    assert order(7, 1) == second
    assert order(8, 0) != first  # another seed
    epoch.assign(0)
    assert sources(dataset) == first
    assert order(7, 0, shuffle=False) == order(8, 1, shuffle=False)  # unshuffled: the frame's order, bucketed


# === 5. decoding through the serving module (an untrained model) ===

DECODE_SOURCES = ["ein hund läuft schnell", "der", "", "zwei hunde laufen weg ein kind spielt", "unbekannt wort"]


@pytest.fixture(scope="module")
def untrained(tokenizers):
    """EncoderDecoderServing on a seeded untrained model: it ends some
    hypotheses at once and runs others to the length limit."""
    config = tr_config()
    keras.utils.set_random_seed(5)
    source_tokenizer, target_tokenizer = tokenizers
    model = build_model(config, source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size())
    return EncoderDecoderServing(source_tokenizer, target_tokenizer, model, config.decoding), config


def source_ids(module, text):
    """The model's source ids of `text`: its tokens then </s>."""
    return [int(i) for i in module.source_tokenizer.tokenize(tf.constant([text])).to_list()[0]] + [END_ID]


def length_limit(module, config, text):
    d = config.decoding
    return math.ceil(d.max_length_ratio * (len(source_ids(module, text)) - 1)) + d.max_length_offset


def beam(module, sources, width, n_best, alpha):
    out = module.beam_search(tf.constant(sources), tf.constant(width), tf.constant(n_best), tf.constant(alpha))
    return {k: v.numpy() for k, v in out.items()}


def test_beam_width_one_is_greedy_decoding(untrained):
    module, _ = untrained
    greedy = {k: v.numpy() for k, v in module.greedy(tf.constant(DECODE_SOURCES)).items()}
    one = beam(module, DECODE_SOURCES, 1, 1, 0.0)
    np.testing.assert_array_equal(one["text"][:, 0], greedy["text"])
    np.testing.assert_allclose(one["score"][:, 0], greedy["score"], rtol=1e-6)
    # greedy by hand: the argmax of each decode_step (banned ids never win), the whole batch at once
    model = module.model
    rows = [source_ids(module, text) for text in DECODE_SOURCES]
    padded = tf.constant([row + [PAD_ID] * (max(map(len, rows)) - len(row)) for row in rows])
    memory, keys, mask, state = model.encode(padded)
    tokens = tf.fill([len(rows)], START_ID)
    chosen, chosen_log_probs = [], []
    for _ in range(max(one["lengths"][:, 0])):
        logits, state, _ = model.decode_step(tokens, state, memory, keys, mask, source=padded)
        log_probs = tf.nn.log_softmax(logits).numpy()
        chosen.append(log_probs.argmax(-1))
        chosen_log_probs.append(log_probs.max(-1))
        tokens = tf.constant(chosen[-1], tf.int32)
    chosen, chosen_log_probs = np.stack(chosen, axis=1), np.stack(chosen_log_probs, axis=1)
    for row, text in enumerate(DECODE_SOURCES):
        length = one["lengths"][row, 0]
        assert chosen[row, :length].tolist() == unpad(one["ids"][row, 0]), text
        assert chosen[row, length - 1] == END_ID or length == length_limit(module, untrained[1], text)
        assert END_ID not in chosen[row, : length - 1]
        assert greedy["score"][row] == pytest.approx(chosen_log_probs[row, :length].sum(), abs=1e-4)
    # with a length penalty, width 1 keeps the tokens and divides the score by lp(|Y|)
    penalised = beam(module, DECODE_SOURCES, 1, 1, 0.6)
    np.testing.assert_array_equal(penalised["ids"], one["ids"])
    lp = ((5 + penalised["lengths"][:, 0]) / 6) ** 0.6
    np.testing.assert_allclose(penalised["score"][:, 0], greedy["score"] / lp, rtol=1e-5)


@pytest.mark.parametrize("width, n_best", [(3, 3), (4, 2)])
def test_beam_search_scores_are_gnmt_normalised_log_probabilities(untrained, width, n_best):
    module, config = untrained
    out = beam(module, DECODE_SOURCES, width, n_best, 0.6)
    assert out["ids"].shape[:2] == out["score"].shape == out["lengths"].shape == (len(DECODE_SOURCES), n_best)
    ended = cut_off = 0
    for row, text in enumerate(DECODE_SOURCES):
        scores = out["score"][row]
        assert np.isfinite(scores).all()
        assert (np.diff(scores) <= 0).all(), scores  # best first
        limit = length_limit(module, config, text)
        for k in range(n_best):
            length = int(out["lengths"][row, k])
            ids = out["ids"][row, k]
            tokens = ids[:length].tolist()
            assert 1 <= length <= limit
            assert (ids[length:] == PAD_ID).all() and PAD_ID not in tokens and START_ID not in tokens
            assert END_ID not in tokens[:-1]
            if tokens[-1] == END_ID:
                ended += 1
            else:
                assert length == limit  # only the limit stops a hypothesis without </s>
                cut_off += 1
            expected = (
                teacher_forced_log_prob(module.model, source_ids(module, text), tokens) / ((5 + length) / 6) ** 0.6
            )
            assert scores[k] == pytest.approx(expected, abs=1e-4), (text, k)
        # the n-best are distinct hypotheses
        assert len({tuple(out["ids"][row, k]) for k in range(n_best)}) == n_best
    assert ended and cut_off  # both kinds of hypothesis were checked
    assert [t.decode() for t in out["text"][:, 0]] == [
        module.target_tokenizer.detokenize(tf.constant([out["ids"][r, 0]])).numpy()[0].decode()
        for r in range(len(DECODE_SOURCES))
    ]


def test_the_serving_signature_is_the_default_beam_search(untrained):
    module, config = untrained
    served = module.serve(tf.constant(DECODE_SOURCES))
    out = beam(module, DECODE_SOURCES, config.decoding.beam_width, 1, config.decoding.length_penalty)
    np.testing.assert_array_equal(served["text"].numpy(), out["text"][:, 0])
    np.testing.assert_allclose(served["score"].numpy(), out["score"][:, 0], rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="n_best cannot exceed beam_width"):
        beam(module, DECODE_SOURCES[:1], 2, 3, 0.6)


def test_a_batch_of_empty_texts_decodes_like_an_empty_text_among_others(untrained):
    """A batch whose texts are all empty tokenises to no column at all; it
    still decodes (up to the length limit) and draws attention."""
    module, _ = untrained
    row = DECODE_SOURCES.index("")
    alone, among = beam(module, [""], 3, 2, 0.6), beam(module, DECODE_SOURCES, 3, 2, 0.6)
    np.testing.assert_array_equal(alone["text"][0], among["text"][row])
    np.testing.assert_allclose(alone["score"][0], among["score"][row], rtol=1e-5)
    greedy_alone, greedy_among = module.greedy(tf.constant([""])), module.greedy(tf.constant(DECODE_SOURCES))
    assert greedy_alone["text"].numpy()[0] == greedy_among["text"].numpy()[row]
    assert module.serve(tf.constant([""]))["text"].numpy()[0] == among["text"][row, 0]
    signatures = {"attention": module.attention}
    weights, source_pieces, target_pieces = seq2seq.attention(signatures, "ein hund", "")
    assert (source_pieces, target_pieces) == (["ein", "hund", "</s>"], ["</s>"])
    np.testing.assert_allclose(weights.sum(-1), [1.0], atol=1e-6)
    weights, source_pieces, target_pieces = seq2seq.attention(signatures, "", "a dog")
    assert (source_pieces, target_pieces) == (["</s>"], ["a", "dog", "</s>"])
    np.testing.assert_array_equal(weights, np.ones((3, 1)))


# === 6. a model overfit on PAIRS: translation and export ===


def texts(rows):
    return [row["text"] for row in rows]


def hypotheses(rows):
    """Each row's n-best (text, score) pairs; the row's text and score are its first."""
    for row in rows:
        assert (row["text"], row["score"]) == row["n_best"][0]
    return [row["n_best"] for row in rows]


def assert_rows_close(first, second):
    """The same texts, and scores to float32 precision."""
    first, second = hypotheses(first), hypotheses(second)
    assert [[text for text, _ in row] for row in first] == [[text for text, _ in row] for row in second]
    np.testing.assert_allclose(
        [[s for _, s in row] for row in first], [[s for _, s in row] for row in second], atol=1e-5
    )


def decoding_defaults(signatures):
    return {k: v.numpy().item() for k, v in signatures["decoding_defaults"]().items()}


def test_the_overfit_model_translates_its_training_pairs(overfit, served):
    run = overfit[0]
    assert texts(run.predict(SOURCES, greedy=True)) == TARGETS
    assert texts(run.predict(SOURCES, beam_width=3)) == TARGETS
    assert decoding_defaults(served[0])["beam_width"] == 3
    default = run.predict(SOURCES)  # the run's beam width and length penalty
    assert default == run.predict(SOURCES, beam_width=3, length_penalty=0.6)
    assert default == runs.load(run.path).predict(SOURCES)  # the run opened afresh
    n_best = hypotheses(run.predict(SOURCES, beam_width=3, n_best=3))
    for row, best in zip(n_best, hypotheses(default)):
        assert len(row) == 3 and len({text for text, _ in row}) == 3
        assert row[0][0] == best[0][0] and row[0][1] == pytest.approx(best[0][1])
        scores = [score for _, score in row]
        assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]
    for [(_, score)] in hypotheses(run.predict(SOURCES, greedy=True)):
        assert -0.5 < score < 0  # a log-probability near 1


def test_export_in_a_fresh_process_translates_the_same(overfit, exported):
    run = overfit[0]
    sources = SOURCES + ["", "hund ein unbekannt"]
    strings = (sources, "string")
    beam_inputs = {
        "source": strings,
        "beam_width": (3, "int32"),
        "n_best": (2, "int32"),
        "length_penalty": (0.6, "float32"),
    }
    default, beam_out, greedy, defaults = call_export(  # word tokenisers: no tensorflow_text needed
        exported,
        [
            ("serving_default", {"source": strings}),
            ("beam_search", beam_inputs),
            ("greedy", {"source": strings}),
            ("decoding_defaults", {}),
        ],
    )
    rows = lambda values: np.reshape(np.array(values, dtype=object), (len(sources), -1)).tolist()  # noqa: E731
    for name, outputs, in_process in [
        ("default", default, run.predict(sources)),
        ("beam", beam_out, run.predict(sources, beam_width=3, n_best=2)),
        ("greedy", greedy, run.predict(sources, greedy=True)),
    ]:
        in_process = hypotheses(in_process)
        assert rows(outputs["text"]) == [[text for text, _ in row] for row in in_process], name
        np.testing.assert_allclose(
            np.array(rows(outputs["score"]), float), [[s for _, s in row] for row in in_process], rtol=1e-5, atol=1e-6
        )
    assert default["text"][: len(PAIRS)] == TARGETS
    assert sorted(default) == ["score", "text"]
    assert defaults == pytest.approx(
        {"beam_width": 3, "length_penalty": 0.6, "max_length_ratio": 1.5, "max_length_offset": 10}
    )
    # the export in this process: the same predictions, and what it says about itself
    loaded = runs.load(exported)
    assert isinstance(loaded, runs.Exported) and loaded.task is TASK
    assert_rows_close(loaded.predict(sources, beam_width=3, n_best=2), run.predict(sources, beam_width=3, n_best=2))
    info = json.loads((loaded.path / "assets.extra" / "nlptool.json").read_text())
    assert loaded.path == exported / "1"  # the model folder's highest version
    assert info["task"] == "translation" and info["tensorflow_text"] is False
    assert info["signatures"] == list(TASK.signatures)
    with pytest.raises(ExportError, match="already exists"):
        run.export(exported, version=1)
    with pytest.raises(RunError, match="is an export"):
        loaded.evaluate(pairs_frame(PAIRS))


# === 7. attention ===


def test_attention_rows_are_distributions_over_source_pieces(served, exported):
    signatures = served[0]
    weights, source_pieces, target_pieces = seq2seq.attention(
        signatures, "ein hund läuft schnell", "the woman reads a lot"
    )
    assert source_pieces == ["ein", "hund", "läuft", "schnell", "</s>"]
    assert target_pieces == ["the", "woman", "reads", "a", "lot", "</s>"]
    assert weights.shape == (6, 5)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (weights >= 0).all()
    unknown = seq2seq.attention(signatures, "hund", "a zebra")
    assert unknown[1] == ["hund", "</s>"] and unknown[2] == ["a", "<unk>", "</s>"]
    assert unknown[0].shape == (3, 2)
    # the exported model gives the same weights
    again = seq2seq.attention(runs.load(exported).signatures, "ein hund läuft schnell", "the woman reads a lot")
    np.testing.assert_allclose(again[0], weights, atol=1e-6)
    assert again[1:] == (source_pieces, target_pieces)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_attention_writes_a_png(overfit, served, tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    out = tmp_path / "plots" / "attention.png"
    rows = overfit[0].predict(["ein hund läuft schnell"], plot_attention=out)
    assert texts(rows) == ["a dog runs fast"]  # the model's own translation is drawn
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(out)
    # figsize (1.5 + 0.45 * 5 pieces, 1.2 + 0.38 * 5 pieces) inches at 120 dpi (up to rounding)
    height, width, channels = image.shape
    assert channels == 4
    assert abs(height - 120 * (1.2 + 0.38 * 5)) < 1 and abs(width - 120 * (1.5 + 0.45 * 5)) < 1
    assert image[..., :3].std() > 0.05  # not blank
    assert sorted(p.name for p in out.parent.iterdir()) == ["attention.png"]
    assert plt.get_fignums() == []  # the figure is closed
    # with a given target, that is drawn
    assert seq2seq.draw_attention(served[0], "ein hund läuft schnell", "a dog", out) == out
    assert abs(matplotlib.image.imread(out).shape[0] - 120 * (1.2 + 0.38 * 3)) < 1  # 2 pieces and </s>
    # one sentence a plot
    with pytest.raises(UsageError, match="one sentence"):
        overfit[0].predict(SOURCES[:2], plot_attention=tmp_path / "two.png")
    assert not (tmp_path / "two.png").exists()


def test_a_failing_plot_leaves_no_partial_file(served, tmp_path, monkeypatch):
    import matplotlib.figure
    import matplotlib.pyplot as plt

    def broken_savefig(self, stream, **kwargs):
        stream.write(PNG_SIGNATURE + b"truncated")
        raise OSError("disk full")

    signatures = served[0]
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        seq2seq.draw_attention(signatures, "der mann isst brot", "the man", tmp_path / "new.png")
    assert list(tmp_path.iterdir()) == []
    previous = tmp_path / "old.png"
    previous.write_bytes(b"previous plot")
    with pytest.raises(OSError, match="disk full"):
        seq2seq.draw_attention(signatures, "der mann isst brot", "the man", previous)
    assert previous.read_bytes() == b"previous plot"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]
    assert plt.get_fignums() == []


# === 8. evaluation ===

METRIC_KEYS = ["beam", "bleu", "chrf", "greedy", "length_penalty", "pairs", "perplexity", "split"]


def test_evaluate_scores_the_overfit_model_perfectly_on_its_training_pairs(overfit):
    run = overfit[0]
    # training evaluated the test split (PAIRS) already
    assert sorted(run.metrics) == METRIC_KEYS and run.metrics["split"] == "test"
    assert run.metrics["bleu"] == pytest.approx(100.0)
    pairs = pairs_frame(PAIRS)
    metrics = run.evaluate(pairs, split="train")
    assert json.loads((run.path / "metrics.json").read_text()) == metrics
    assert sorted(metrics) == METRIC_KEYS
    assert metrics["split"] == "train" and metrics["pairs"] == len(PAIRS)
    for name, width in (("beam", 3), ("greedy", 1)):
        assert metrics[name]["bleu"] == pytest.approx(100.0)
        assert metrics[name]["chrf"] == pytest.approx(100.0)
        assert metrics[name]["beam_width"] == width
        assert metrics[name]["bleu_signature"].startswith("nrefs:1|")
    assert (metrics["bleu"], metrics["chrf"]) == (metrics["beam"]["bleu"], metrics["beam"]["chrf"])
    assert metrics["perplexity"] == pytest.approx(run.metrics["perplexity"], rel=1e-6)  # the same pairs
    # perplexity: exp of the mean nll per reference token (</s> included), by hand from the model
    trained = runs.Run.open(run.path).load()
    source_tokenizer, target_tokenizer = (trained.preprocessing.tokenizers[role] for role in ("source", "target"))
    total = count = 0.0
    for (source, target_input), target_output in pair_dataset(source_tokenizer, target_tokenizer, pairs, 4):
        _, nll, n = smoothed_nll(trained.model((source, target_input))[0], target_output)
        total, count = total + float(nll), count + float(n)
    assert count == sum(len(t.split()) + 1 for t in TARGETS)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert 1.0 <= metrics["perplexity"] < 1.2
    table = pd.read_csv(run.path / "translations.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == ["source", "reference", "beam", "greedy"]
    assert table["source"].tolist() == SOURCES and table["reference"].tolist() == TARGETS
    assert table["beam"].tolist() == table["greedy"].tolist() == TARGETS
    # a wider beam on request
    assert run.evaluate(pairs, beam_width=2)["beam"]["beam_width"] == 2
    # the run was given data in memory: evaluate needs them named
    with pytest.raises(UsageError, match="trained without test data"):
        runs.Run.open(run.path).evaluate()


def test_evaluate_on_wrong_references_scores_low(overfit):
    pairs = pairs_frame([(s, t) for s, t in zip(SOURCES, TARGETS[1:] + TARGETS[:1])])
    metrics = overfit[0].evaluate(pairs)
    assert metrics["split"] == "test"
    assert metrics["bleu"] < 20 and metrics["perplexity"] > 10


# === 9. exact resume ===


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def without_seconds(metrics):
    return {k: without_seconds(v) if isinstance(v, dict) else v for k, v in metrics.items() if k != "seconds"}


def test_resume_after_interruption_gives_the_uninterrupted_run(overfit, tmp_path, monkeypatch, interrupted_at_epoch):
    straight, config, straight_last = overfit
    assert config.model.dropout > 0  # the dropout masks must resume too
    reference = pd.read_csv(straight.path / "history.csv")
    epochs = config.training.epochs
    assert reference["epoch"].tolist() == list(range(epochs)) and straight_last["epoch"] == epochs - 1
    # interrupt right after the best epoch when there is a later one: the
    # best checkpoint, written before the interruption, must survive it
    best = int(reference["val_perplexity"].idxmin())
    stop = best + 1 if best + 1 < epochs else epochs // 2
    run, last = tmp_path / "run", {}
    recording_last_weights(monkeypatch, last)
    with interrupted_at_epoch(stop):
        train_tiny(TASK, corpus_of(PAIRS), TINY, run)
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == list(range(stop))
    assert (run / "backup").is_dir() and not runs.Run.open(run).finished
    # another request is refused, naming the difference, and leaves the run as it was
    with pytest.raises(RunError, match="training.learning_rate: 0.02 in the run, 0.03 now"):
        train_tiny(TASK, corpus_of(PAIRS), [*TINY, "training.learning_rate=0.03"], run)
    resumed = train_tiny(TASK, corpus_of(PAIRS), TINY, run)  # the same request: resumes
    assert not (run / "backup").exists()  # removed once the fit completes
    assert resumed.finished

    pd.testing.assert_frame_equal(pd.read_csv(run / "history.csv"), reference)
    assert last["epoch"] == epochs - 1
    assert_same_weights(last["weights"], straight_last["weights"])  # the weights after the last epoch

    # the best checkpoint and the model at the end of training: the best epoch's weights
    resumed_best, straight_best = resumed.load().model.get_weights(), straight.load().model.get_weights()
    assert_same_weights(straight_last["final"], straight_best)
    assert_same_weights(resumed_best, straight_best)
    assert_same_weights(last["final"], straight_best)
    assert without_seconds(resumed.metrics) == without_seconds(straight.metrics)  # the test split, evaluated
    # finished: the same request again is refused
    with pytest.raises(RunError, match="finished run"):
        train_tiny(TASK, corpus_of(PAIRS), TINY, run)


@pytest.mark.slow  # the contract with word tokenisers runs by default; the CLI tests train with SentencePiece
def test_the_task_contract_with_sentencepiece_tokenizers(tmp_path, interrupted_at_epoch):
    """The default (SentencePiece) tokenisers through tests/harness.py: the
    export runs in a process that has only tensorflow_text besides
    TensorFlow, and an interrupted run resumes to the same weights."""
    overrides = [o for o in TINY if not o.startswith(("tokenizer.", "training.epochs"))]
    overrides += ["tokenizer.vocab_size=40", "training.epochs=3"]
    run = run_task_test(
        TASK,
        corpus_of(PAIRS),
        overrides,
        SOURCES[:3],
        tmp_path,
        predict_options={"beam_width": 2, "n_best": 2},
        signature_calls=all_signature_calls(SOURCES[:3]),
        resume=True,
        tensorflow_text=True,
        interrupted_at_epoch=interrupted_at_epoch,
    )
    assert type(run.load().preprocessing.tokenizers["source"]).__name__ == "SentencePieceTokenizer"
    info = json.loads((tmp_path / "export" / "1" / "assets.extra" / "nlptool.json").read_text())
    assert info["tensorflow_text"] is True


# === 10. data ===


def write_file(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def read_files(train, columns, validation=None, test=None, *overrides, **source):
    return TASK.read_data(
        DataSource(train_file=train, validation_file=validation, test_file=test, columns=columns, **source),
        tr_config(*overrides),
    )


DE_EN = {"source": "de", "target": "en"}


def test_file_pairs_read_the_named_columns_as_text(tmp_path):
    train = write_file(tmp_path / "train.csv", "de,en,note\nein hund,a dog,x\nzwei,2,y\nnull,007,z\n")
    validation = write_file(tmp_path / "valid.csv", "en,de\n3.50,drei fünfzig\n")
    test = write_file(tmp_path / "test.jsonl", '{"de": "drei fünfzig", "en": "3.50"}\n')
    corpus = read_files(train, DE_EN, validation, test)
    assert corpus.train.to_dict("list") == {"source": ["ein hund", "zwei", "null"], "target": ["a dog", "2", "007"]}
    assert corpus.validation.to_dict("list") == {"source": ["drei fünfzig"], "target": ["3.50"]}
    assert corpus.test.to_dict("list") == corpus.validation.to_dict("list")  # JSON Lines reads the same
    assert all(isinstance(t, str) for t in corpus.train["target"])
    assert read_files(train, DE_EN, validation).test is None
    assert len(read_files(train, DE_EN, validation, max_train_examples=2).train) == 2
    # a TSV file, and the test file `evaluate` reads
    tsv = write_file(tmp_path / "pairs.tsv", "de\ten\nein hund\ta dog\n")
    pairs, name = TASK.read_split(DataSource(test_file=tsv, columns=DE_EN), tr_config())
    assert pairs.to_dict("list") == {"source": ["ein hund"], "target": ["a dog"]} and name == str(tsv)
    # the default columns are named after the roles
    roles = write_file(tmp_path / "roles.csv", "target,source\na dog,ein hund\n")
    assert read_files(roles, {}, roles).train.to_dict("list") == {"source": ["ein hund"], "target": ["a dog"]}


def test_file_pair_errors_name_the_file_and_the_fault(tmp_path):
    train = write_file(tmp_path / "train.csv", "de,en\nein hund,a dog\neine katze,\nder mann,the man\n")
    with pytest.raises(DataError) as error:
        read_files(train, {"source": "de", "target": "english"})
    message = str(error.value)
    assert str(train) in message and "'english'" in message and "['de', 'en']" in message
    assert "--target-column" in message  # named as the command line spells it
    with pytest.raises(DataError) as error:
        read_files(train, DE_EN)
    message = str(error.value)
    assert str(train) in message and "'en'" in message and "data row 2 (line 3)" in message
    assert "empty or missing target" in message
    good = write_file(tmp_path / "good.csv", "de,en\nein hund,a dog\n")
    with pytest.raises(DataError, match="Cannot hold out rows of .*good.csv"):
        read_files(good, DE_EN)  # one pair: nothing left to train on after the hold-out
    with pytest.raises(DataError, match="missing.csv"):
        read_files(good, DE_EN, tmp_path / "missing.csv")
    # data frames in memory are checked alike
    with pytest.raises(DataError, match="no column 'source'"):
        TASK.from_frames(pd.DataFrame({"de": ["ein hund"], "en": ["a dog"]}))
    with pytest.raises(DataError, match="empty target in column 'en'"):
        TASK.from_frames(pd.DataFrame({"de": ["a", "b"], "en": ["x", " "]}), columns=DE_EN)


def test_the_hold_out_is_fixed_by_the_seed_and_disjoint_from_train(tmp_path):
    rows = [(f"quelle {i}", f"target {i}") for i in range(40)]
    train = write_file(tmp_path / "train.csv", "src,tgt\n" + "".join(f"{s},{t}\n" for s, t in rows))
    columns = {"source": "src", "target": "tgt"}

    def split(seed, fraction=0.1):
        return read_files(
            train, columns, None, None, f"training.seed={seed}", f"training.validation_fraction={fraction}"
        )

    corpus = split(3)
    held_out, kept = corpus.validation["source"].tolist(), corpus.train["source"].tolist()
    assert len(held_out) == 4 and len(kept) == 36
    assert not set(held_out) & set(kept) and sorted(held_out + kept) == sorted(s for s, _ in rows)
    # pairs stay pairs, and both parts keep the file order
    pairs = dict(rows)
    for part in (corpus.train, corpus.validation):
        assert all(pairs[s] == t for s, t in zip(part["source"], part["target"]))
        assert part["source"].tolist() == sorted(part["source"], key=lambda s: int(s.split()[1]))
    again = split(3)
    pd.testing.assert_frame_equal(again.validation, corpus.validation)
    pd.testing.assert_frame_equal(again.train, corpus.train)
    held_out_by_seed = {tuple(split(seed).validation["source"]) for seed in range(4)}
    assert len(held_out_by_seed) > 1  # the seed matters
    assert len(read_files(train, columns).validation) == 2  # the default 5 %


def test_datasets_refuse_what_no_dataset_can_give(tmp_path):
    assert datasets.get("multi30k").task == datasets.get("spa_eng").task == "translation"

    def read(name, source_lang, target_lang):
        config = config_lib.resolve(TranslationConfig, [], [f"source_lang={source_lang}", f"target_lang={target_lang}"])
        return TASK.read_data(DataSource(dataset=name, data_dir=tmp_path), config)

    with pytest.raises(UsageError, match="not a translation dataset") as error:
        read("imdb", "de", "en")
    assert "multi30k" in str(error.value) and "spa_eng" in str(error.value)
    with pytest.raises(UsageError, match="no language 'es' \\(the target language\\)") as error:
        read("multi30k", "de", "es")
    assert "['en', 'de', 'fr']" in str(error.value)  # the languages it has
    with pytest.raises(UsageError, match="no language 'de' \\(the source language\\)"):
        read("spa_eng", "de", "en")
    with pytest.raises(UsageError, match="both 'en'"):
        read("spa_eng", "en", "en")
    with pytest.raises(UsageError, match="no language 'xx'"):
        TASK.read_split(DataSource(dataset="multi30k", data_dir=tmp_path), tr_config("source_lang=xx"))
    assert list(tmp_path.iterdir()) == []  # nothing was read or fetched


# === 11. argument errors ===


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beam_width": 2, "n_best": 3},
        {"beam_width": -1},
        {"beam_width": 0},
        {"beam_width": 3, "n_best": 0},
        {"n_best": 4},  # more than the run's beam width, 3
        {"greedy": True, "n_best": 2},
    ],
)
def test_translate_refuses_impossible_arguments(overfit, exported, kwargs):
    for loaded in (overfit[0], runs.load(exported)):
        with pytest.raises(UsageError, match="n_best"):
            loaded.predict(SOURCES[:1], **kwargs)


def test_predict_takes_a_list_of_strings(overfit):
    with pytest.raises(UsageError, match="not a single string"):
        overfit[0].predict(SOURCES[0])
    with pytest.raises(UsageError, match="item 1 is int"):
        overfit[0].predict([SOURCES[0], 3])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("length_penalty", float("nan"), "length_penalty must be >= 0"),
        ("length_penalty", -0.5, "length_penalty must be >= 0"),
        ("beam_width", 0, r"beam_width must be in \[1, 64\]"),
        ("beam_width", 65, r"beam_width must be in \[1, 64\]"),
    ],
)
def test_decoding_options_out_of_range_are_refused_by_the_export_and_the_api(exported, option, value, message):
    export = runs.load(exported)
    arguments = {"source": SOURCES[:1], "beam_width": 2, "n_best": 1, "length_penalty": 0.6, option: value}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call_signature(export.signatures["beam_search"], **arguments)
    # the API checks the beam width with n_best, in one message
    api_message = r"Need a beam width in \[1, 64\] and 1 <= n_best" if option == "beam_width" else message
    with pytest.raises(UsageError, match=api_message):
        export.predict(SOURCES[:1], **{option: value})


def test_a_source_is_read_up_to_its_first_max_source_length_tokens(served):
    """A 100 kB source is translated from its first 200 tokens (decoding.max_source_length), as that
    prefix alone would be: no request decodes for longer than 1.5 x 200 + 10 steps."""
    signatures, module = served
    long = " ".join([SOURCES[0]] * 20_000)
    tokenizer = module.source_tokenizer
    prefix = tokenizer.detokenize(tokenizer.cut([long], 200)).numpy()[0].decode("utf-8")
    assert tokenizer.lengths([prefix]).numpy().tolist() == [200]
    texts = signatures["greedy"](source=tf.constant([long, prefix]))["text"].numpy().tolist()
    assert texts[0] == texts[1]
