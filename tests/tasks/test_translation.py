"""Translation on tiny models: the smoothed loss by hand, teacher forcing
against step-by-step decoding, the pair batches, beam search scores, a model
overfit on a handful of pairs (translation, export in a fresh process,
attention plots, evaluation, exact resume), and the corpus readers' errors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
from nlptool import training
from nlptool.data import datasets
from nlptool.tasks import translation_steps as steps
from nlptool.tasks.translation import (
    RNNSearch,
    TranslationConfig,
    TranslationServing,
    build_model,
    smoothed_nll,
)
from nlptool.tokenizers import END_ID, PAD_ID, START_ID
from nlptool.training import RunError

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


def tr_config(*overrides):
    return config_lib.resolve(TranslationConfig, [], [*TINY, *overrides])


def pairs_frame(pairs):
    return pd.DataFrame(list(pairs), columns=["source", "target"])


def corpus_of(pairs, copies=4):
    """The pairs `copies` times over for training, once for validation and test."""
    return steps.ParallelCorpus(pairs_frame(pairs * copies), pairs_frame(pairs), pairs_frame(pairs))


def unpad(row):
    row = np.asarray(row)
    return row[row != PAD_ID].tolist()


def allowed(vocabulary_size):
    return np.array([i for i in range(vocabulary_size) if i not in BANNED])


@pytest.fixture(scope="module")
def tokenizers():
    return steps.make_tokenizers(tr_config(), corpus_of(PAIRS))


class LastWeights(keras.callbacks.Callback):
    """Keeps the model's weights at the end of the latest epoch (before EarlyStopping restores the best)."""

    def __init__(self, store):
        super().__init__()
        self.store = store

    def on_epoch_end(self, epoch, logs=None):
        self.store["epoch"], self.store["weights"] = epoch, self.model.get_weights()


def recording_last_weights(monkeypatch, store):
    """Make every training run record its last epoch's weights into `store`."""
    real = training.callbacks
    monkeypatch.setattr(training, "callbacks", lambda *args, **kwargs: real(*args, **kwargs) + [LastWeights(store)])


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """A run trained to reproduce PAIRS exactly: (run directory, config,
    model returned by train, {"epoch", "weights"} at the end of the last epoch)."""
    run = tmp_path_factory.mktemp("overfit") / "run"
    config = tr_config()
    last = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        recording_last_weights(monkeypatch, last)
        model, _, _ = steps.train(config, corpus_of(PAIRS), run, verbose=0)
    return run, config, model, last


@pytest.fixture(scope="module")
def translator(overfit):
    return steps.Translator(overfit[0])


# === 1. the loss ===


def hand_losses(logits, targets, eps):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
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


def tiny_model(tie_embeddings, source_vocabulary=20, target_vocabulary=23, seed=3):
    keras.utils.set_random_seed(seed)
    model = RNNSearch(
        source_vocabulary,
        target_vocabulary,
        embedding_dim=8,
        encoder_units=8,
        encoder_layers=2,
        decoder_units=12,
        attention_units=10,
        dropout=0.3,  # inactive outside training
        tie_embeddings=tie_embeddings,
        seed=seed,
    )
    model.build()
    return model


SOURCE_BATCH = np.array([[5, 6, 7, 8, 3], [9, 3, 0, 0, 0], [10, 11, 12, 3, 0]], np.int32)
TARGET_BATCH = np.array([[2, 4, 5, 6], [2, 7, 0, 0], [2, 8, 9, 10]], np.int32)


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


# === 3. pair batches ===

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
    return steps.make_tokenizers(tr_config(), corpus_of(VARIED, copies=1))


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
    sources = steps.encode(source_tokenizer, frame["source"].tolist()).to_list()
    targets = steps.encode(target_tokenizer, frame["target"].tolist()).to_list()
    expected = sorted((tuple(s), tuple(t)) for s, t in zip(sources, targets))
    for shuffle in (False, True):
        rows = batch_rows(steps.pair_dataset(source_tokenizer, target_tokenizer, frame, 3, shuffle=shuffle, seed=1))
        for source, target_input, target_output in rows:
            assert source[-1] == END_ID and END_ID not in source[:-1]
            assert target_input[0] == START_ID and START_ID not in target_input[1:]
            assert target_output == target_input[1:] + [END_ID]
        assert sorted((tuple(s[:-1]), tuple(t_out[:-1])) for s, _, t_out in rows) == expected


def test_pair_dataset_pads_with_zeros_on_the_right(varied_tokenizers):
    dataset = steps.pair_dataset(*varied_tokenizers, pairs_frame(VARIED), 4)
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
    rows = batch_rows(steps.pair_dataset(*varied_tokenizers, frame, 2, max_length=max_length))
    kept = sorted(tuple(source) for source, _, _ in rows)
    # the model's sequences (with </s> or <s>) hold at most max_length tokens
    source_tokenizer, target_tokenizer = varied_tokenizers
    sources = steps.encode(source_tokenizer, frame["source"].tolist()).to_list()
    targets = steps.encode(target_tokenizer, frame["target"].tolist()).to_list()
    expected = sorted(
        tuple(s) + (END_ID,) for s, t in zip(sources, targets) if len(s) + 1 <= max_length and len(t) + 1 <= max_length
    )
    assert kept == expected
    assert 0 < len(kept) < len(VARIED) - 2
    with pytest.raises(RunError, match="No sentence pair of 12"):
        steps.pair_dataset(*varied_tokenizers, frame, 2, max_length=1)


def test_shuffled_order_is_a_function_of_seed_and_epoch(varied_tokenizers):
    frame = pairs_frame(VARIED)
    epoch = tf.Variable(0, dtype=tf.int64)

    def sources(dataset):
        return [source for source, _, _ in batch_rows(dataset)]

    def order(seed, epoch_value, shuffle=True):
        variable = tf.Variable(epoch_value, dtype=tf.int64)
        return sources(steps.pair_dataset(*varied_tokenizers, frame, 2, shuffle=shuffle, seed=seed, epoch=variable))

    dataset = steps.pair_dataset(*varied_tokenizers, frame, 2, shuffle=True, seed=7, epoch=epoch)
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


# === 4. decoding through the translation module (an untrained model) ===

DECODE_SOURCES = ["ein hund läuft schnell", "der", "", "zwei hunde laufen weg ein kind spielt", "unbekannt wort"]


@pytest.fixture(scope="module")
def untrained(tokenizers):
    """TranslationServing on a seeded untrained model: it ends some
    hypotheses at once and runs others to the length limit."""
    config = tr_config()
    keras.utils.set_random_seed(5)
    source_tokenizer, target_tokenizer = tokenizers
    model = build_model(config, source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size())
    return TranslationServing(source_tokenizer, target_tokenizer, model, config.decoding), config


def source_ids(module, text):
    """The model's source ids of `text`: its tokens then </s>."""
    return [int(i) for i in module.source_tokenizer.tokenize(tf.constant([text])).to_list()[0]] + [END_ID]


def teacher_forced_log_prob(module, source, tokens):
    """log P(tokens | source) under the model run by `call`, with <pad> and <s> banned as in decode_step."""
    target_input = [START_ID] + tokens[:-1]
    logits, _ = module.model((tf.constant([source_ids(module, source)]), tf.constant([target_input])))
    logits = logits.numpy()[0].astype(np.float64)
    logits[:, BANNED] = -np.inf
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return float(sum(log_probs[t, token] for t, token in enumerate(tokens)))


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
        logits, state, _ = model.decode_step(tokens, state, memory, keys, mask)
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
            expected = teacher_forced_log_prob(module, text, tokens) / ((5 + length) / 6) ** 0.6
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


# === 5. a model overfit on PAIRS: translation and export ===

TARGETS = [t for _, t in PAIRS]


def texts(results):
    return [hypotheses[0][0] for hypotheses in results]


def test_the_overfit_model_translates_its_training_pairs(translator):
    assert texts(translator.translate(SOURCES, greedy=True)) == TARGETS
    assert texts(translator.translate(SOURCES, beam_width=3)) == TARGETS
    assert translator.defaults["beam_width"] == 3
    default = translator.translate(SOURCES)  # the run's beam width and length penalty
    assert default == translator.translate(SOURCES, beam_width=3, length_penalty=0.6)
    n_best = translator.translate(SOURCES, beam_width=3, n_best=3)
    for hypotheses, best in zip(n_best, default):
        assert len(hypotheses) == 3 and len({text for text, _ in hypotheses}) == 3
        assert hypotheses[0][0] == best[0][0] and hypotheses[0][1] == pytest.approx(best[0][1])
        scores = [score for _, score in hypotheses]
        assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]
    for [(_, score)] in translator.translate(SOURCES, greedy=True):
        assert -0.5 < score < 0  # a log-probability near 1


@pytest.fixture(scope="module")
def exported(overfit):
    out = overfit[0].parent / "export"
    steps.export(overfit[0], out)
    return out


def test_export_in_a_fresh_process_translates_the_same(overfit, translator, exported):
    script = f"""
import json, sys, tensorflow as tf
loaded = tf.saved_model.load({str(exported)!r})
sources = tf.constant({SOURCES + ["", "hund ein unbekannt"]!r})
rows = lambda t: t.numpy().reshape(len({SOURCES!r}) + 2, -1).tolist()
texts = lambda t: [[s.decode() for s in row] for row in rows(t)]
default = loaded.signatures["serving_default"](source=sources)
beam = loaded.signatures["beam_search"](source=sources, beam_width=tf.constant(3), n_best=tf.constant(2),
                                         length_penalty=tf.constant(0.6))
greedy = loaded.signatures["greedy"](source=sources)
defaults = {{k: v.numpy().item() for k, v in loaded.signatures["decoding_defaults"]().items()}}
assert "nlptool" not in sys.modules
print(json.dumps({{
    "default_keys": sorted(default), "default": [texts(default["text"]), rows(default["score"])],
    "beam": [texts(beam["text"]), rows(beam["score"])],
    "greedy": [texts(greedy["text"]), rows(greedy["score"])],
    "defaults": defaults,
}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    sources = SOURCES + ["", "hund ein unbekannt"]
    for name, in_process in [
        ("default", translator.translate(sources)),
        ("beam", translator.translate(sources, beam_width=3, n_best=2)),
        ("greedy", translator.translate(sources, greedy=True)),
    ]:
        exported_texts, exported_scores = result[name]
        assert exported_texts == [[text for text, _ in row] for row in in_process], name
        np.testing.assert_allclose(exported_scores, [[s for _, s in row] for row in in_process], rtol=1e-5, atol=1e-6)
    assert [row[0] for row in result["default"][0][: len(PAIRS)]] == TARGETS
    assert result["default_keys"] == ["score", "text"]
    assert result["defaults"] == pytest.approx(
        {"beam_width": 3, "length_penalty": 0.6, "max_length_ratio": 1.5, "max_length_offset": 10}
    )
    with pytest.raises(steps.export_lib.ExportError, match="already exists"):
        steps.export(overfit[0], exported)


# === 6. attention ===


def test_attention_rows_are_distributions_over_source_pieces(translator, exported):
    weights, source_pieces, target_pieces = translator.attention("ein hund läuft schnell", "the woman reads a lot")
    assert source_pieces == ["ein", "hund", "läuft", "schnell", "</s>"]
    assert target_pieces == ["the", "woman", "reads", "a", "lot", "</s>"]
    assert weights.shape == (6, 5)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (weights >= 0).all()
    unknown = translator.attention("hund", "a zebra")
    assert unknown[1] == ["hund", "</s>"] and unknown[2] == ["a", "<unk>", "</s>"]
    assert unknown[0].shape == (3, 2)
    # the exported model gives the same weights
    again = steps.Translator(exported).attention("ein hund läuft schnell", "the woman reads a lot")
    np.testing.assert_allclose(again[0], weights, atol=1e-6)
    assert again[1:] == (source_pieces, target_pieces)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_attention_writes_a_png(translator, tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    out = tmp_path / "plots" / "attention.png"
    target = steps.plot_attention(translator, "ein hund läuft schnell", out)
    assert target == "a dog runs fast"  # the model's own translation
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
    assert steps.plot_attention(translator, "ein hund läuft schnell", out, target="a dog") == "a dog"
    assert abs(matplotlib.image.imread(out).shape[0] - 120 * (1.2 + 0.38 * 3)) < 1  # 2 pieces and </s>


def test_a_failing_plot_leaves_no_partial_file(translator, tmp_path, monkeypatch):
    import matplotlib.figure
    import matplotlib.pyplot as plt

    def broken_savefig(self, stream, **kwargs):
        stream.write(PNG_SIGNATURE + b"truncated")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        steps.plot_attention(translator, "der mann isst brot", tmp_path / "new.png", target="the man")
    assert list(tmp_path.iterdir()) == []
    previous = tmp_path / "old.png"
    previous.write_bytes(b"previous plot")
    with pytest.raises(OSError, match="disk full"):
        steps.plot_attention(translator, "der mann isst brot", previous, target="the man")
    assert previous.read_bytes() == b"previous plot"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]
    assert plt.get_fignums() == []


# === 7. evaluation ===


def test_evaluate_scores_the_overfit_model_perfectly_on_its_training_pairs(overfit):
    run = overfit[0]
    pairs = pairs_frame(PAIRS)
    metrics = steps.evaluate(run, pairs, split_name="train")
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert sorted(metrics) == ["beam", "bleu", "chrf", "greedy", "length_penalty", "pairs", "perplexity", "split"]
    assert metrics["split"] == "train" and metrics["pairs"] == len(PAIRS)
    for name, width in (("beam", 3), ("greedy", 1)):
        assert metrics[name]["bleu"] == pytest.approx(100.0)
        assert metrics[name]["chrf"] == pytest.approx(100.0)
        assert metrics[name]["beam_width"] == width
        assert metrics[name]["bleu_signature"].startswith("nrefs:1|")
    assert (metrics["bleu"], metrics["chrf"]) == (metrics["beam"]["bleu"], metrics["beam"]["chrf"])
    # perplexity: exp of the mean nll per reference token (</s> included), by hand from the model
    _, source_tokenizer, target_tokenizer, model = steps.load_run(run)
    total = count = 0.0
    for (source, target_input), target_output in steps.pair_dataset(source_tokenizer, target_tokenizer, pairs, 4):
        _, nll, n = smoothed_nll(model((source, target_input))[0], target_output)
        total, count = total + float(nll), count + float(n)
    assert count == sum(len(t.split()) + 1 for t in TARGETS)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert 1.0 <= metrics["perplexity"] < 1.2
    table = pd.read_csv(run / "translations.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == ["source", "reference", "beam", "greedy"]
    assert table["source"].tolist() == SOURCES and table["reference"].tolist() == TARGETS
    assert table["beam"].tolist() == table["greedy"].tolist() == TARGETS


def test_evaluate_on_wrong_references_scores_low(overfit):
    pairs = pairs_frame([(s, t) for s, t in zip(SOURCES, TARGETS[1:] + TARGETS[:1])])
    metrics = steps.evaluate(overfit[0], pairs)
    assert metrics["bleu"] < 20 and metrics["perplexity"] > 10


# === 8. exact resume ===


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_resume_after_interruption_gives_the_uninterrupted_run(overfit, tmp_path, monkeypatch, interrupted_at_epoch):
    straight, config, straight_model, straight_last = overfit
    assert config.model.dropout > 0  # the dropout masks must resume too
    reference = pd.read_csv(straight / "history.csv")
    epochs = config.training.epochs
    assert reference["epoch"].tolist() == list(range(epochs)) and straight_last["epoch"] == epochs - 1
    # interrupt right after the best epoch when there is a later one: the
    # best checkpoint, written before the interruption, must survive it
    best = int(reference["val_perplexity"].idxmin())
    stop = best + 1 if best + 1 < epochs else epochs // 2
    run, last = tmp_path / "run", {}
    recording_last_weights(monkeypatch, last)
    with interrupted_at_epoch(stop):
        steps.train(config, corpus_of(PAIRS), run, verbose=0)
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == list(range(stop))
    assert (run / "backup").is_dir()
    model, _, _ = steps.train(config, corpus_of(PAIRS), run, verbose=0)
    assert not (run / "backup").exists()  # removed once the fit completes

    pd.testing.assert_frame_equal(pd.read_csv(run / "history.csv"), reference)
    assert last["epoch"] == epochs - 1
    assert_same_weights(last["weights"], straight_last["weights"])  # the weights after the last epoch

    # the best checkpoint and the model train() returns: the best epoch's weights
    resumed_best, straight_best = steps.load_run(run)[3].get_weights(), steps.load_run(straight)[3].get_weights()
    assert_same_weights(straight_model.get_weights(), straight_best)
    assert_same_weights(resumed_best, straight_best)
    assert_same_weights(model.get_weights(), straight_best)


# === 9. corpora ===


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_corpus_reads_the_named_columns_as_text(tmp_path):
    train = write_csv(tmp_path / "train.csv", "de,en,note\nein hund,a dog,x\nzwei,2,y\nnull,007,z\n")
    validation = write_csv(tmp_path / "valid.csv", "en,de\n3.50,drei fünfzig\n")
    corpus = steps.csv_corpus(train, "de", "en", validation_csv=validation, test_csv=validation)
    assert corpus.train.to_dict("list") == {"source": ["ein hund", "zwei", "null"], "target": ["a dog", "2", "007"]}
    assert corpus.validation.to_dict("list") == {"source": ["drei fünfzig"], "target": ["3.50"]}
    assert corpus.test.to_dict("list") == corpus.validation.to_dict("list")
    assert all(isinstance(t, str) for t in corpus.train["target"])
    assert steps.csv_corpus(train, "de", "en", validation_csv=validation).test is None


def test_csv_corpus_errors_name_the_file_and_the_fault(tmp_path):
    train = write_csv(tmp_path / "train.csv", "de,en\nein hund,a dog\neine katze,\nder mann,the man\n")
    with pytest.raises(RunError) as error:
        steps.csv_corpus(train, "de", "english")
    assert str(train) in str(error.value) and "'english'" in str(error.value) and "['de', 'en']" in str(error.value)
    with pytest.raises(RunError) as error:
        steps.csv_corpus(train, "de", "en")
    message = str(error.value)
    assert str(train) in message and "'en'" in message and "data row 2 (line 3)" in message
    good = write_csv(tmp_path / "good.csv", "de,en\nein hund,a dog\n")
    with pytest.raises(RunError, match="too few pairs"):
        steps.csv_corpus(good, "de", "en")  # one pair: nothing left to train on after the hold-out
    with pytest.raises(RunError, match="missing.csv"):
        steps.csv_corpus(good, "de", "en", validation_csv=tmp_path / "missing.csv")


def test_csv_corpus_hold_out_is_fixed_by_the_seed_and_disjoint_from_train(tmp_path):
    rows = [(f"quelle {i}", f"target {i}") for i in range(40)]
    train = write_csv(tmp_path / "train.csv", "src,tgt\n" + "".join(f"{s},{t}\n" for s, t in rows))
    corpus = steps.csv_corpus(train, "src", "tgt", seed=3, fraction=0.1)
    held_out, kept = corpus.validation["source"].tolist(), corpus.train["source"].tolist()
    assert len(held_out) == 4 and len(kept) == 36
    assert not set(held_out) & set(kept) and sorted(held_out + kept) == sorted(s for s, _ in rows)
    # pairs stay pairs, and both parts keep the file order
    pairs = dict(rows)
    for split in (corpus.train, corpus.validation):
        assert all(pairs[s] == t for s, t in zip(split["source"], split["target"]))
        assert split["source"].tolist() == sorted(split["source"], key=lambda s: int(s.split()[1]))
    again = steps.csv_corpus(train, "src", "tgt", seed=3, fraction=0.1)
    pd.testing.assert_frame_equal(again.validation, corpus.validation)
    pd.testing.assert_frame_equal(again.train, corpus.train)
    held_out_by_seed = [steps.csv_corpus(train, "src", "tgt", seed=seed, fraction=0.1).validation for seed in range(4)]
    splits = {tuple(frame["source"]) for frame in held_out_by_seed}
    assert len(splits) > 1  # the seed matters
    assert len(steps.csv_corpus(train, "src", "tgt").validation) == 2  # the default 5 %


def test_dataset_corpus_refuses_what_no_dataset_can_give(tmp_path):
    assert datasets.get("multi30k").task == datasets.get("spa_eng").task == "translation"
    with pytest.raises(RunError, match="not a translation dataset") as error:
        steps.dataset_corpus("imdb", "de", "en", data_dir=tmp_path)
    assert "multi30k" in str(error.value) and "spa_eng" in str(error.value)
    with pytest.raises(RunError, match="no language 'es' \\(the target language\\)") as error:
        steps.dataset_corpus("multi30k", "de", "es", data_dir=tmp_path)
    assert "['en', 'de', 'fr']" in str(error.value)  # the languages it has
    with pytest.raises(RunError, match="no language 'de' \\(the source language\\)"):
        steps.dataset_corpus("spa_eng", "de", "en", data_dir=tmp_path)
    with pytest.raises(RunError, match="both 'en'"):
        steps.dataset_corpus("spa_eng", "en", "en", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was read or fetched


# === 10. argument errors ===


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
def test_translate_refuses_impossible_arguments(translator, kwargs):
    with pytest.raises(RunError):
        translator.translate(SOURCES[:1], **kwargs)
