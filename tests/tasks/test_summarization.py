"""Summarisation on tiny models: the pointer-generator's distribution and
its safety against hand computations, extended ids, the coverage loss by
hand, the coverage phase, ROUGE and the lead baseline, a model overfit on a
handful of pairs (the task contract of tests/harness.py: export in a fresh
process through both loaders, exact resume), copying a word the vocabulary
never saw, beam width 1 against greedy, the attention signature and plot,
the command line, and the Gigaword and BBC News readers."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from harness import call_signature, run_task_test, train_tiny

from nlptool import config as config_lib
from nlptool import runs
from nlptool import tasks as task_registry
from nlptool.data import datasets
from nlptool.errors import UsageError
from nlptool.models import pointer_generator
from nlptool.models.encoder_decoder import AttentionEncoderDecoder
from nlptool.models.pointer_generator import PointerGenerator, extend_ids, extend_target_ids
from nlptool.tasks.base import Splits
from nlptool.tasks.summarization import SummarizationConfig, copy_and_repetition, lead, summary_scores
from nlptool.tokenizers import PAD_ID, UNK_ID

TASK = task_registry.get("summarization")

# each summary copies words of its text, one of them the name the vocabulary never keeps
NAMES = ["okafor", "lindqvist", "tanaka", "moreau", "ivanova", "haddad", "kowalski", "nakamura"]
PAIRS = [(f"police in the city arrested {name} on monday after a long search", f"{name} arrested") for name in NAMES]
TEXTS = [t for t, _ in PAIRS]
SUMMARIES = [s for _, s in PAIRS]
TINY = [
    "tokenizer.kind=word",
    "tokenizer.vocab_size=16",  # the 11 shared words and reserved ids, no room for the names
    "model.embedding_dim=16",
    "model.encoder_units=16",
    "model.decoder_units=32",
    "model.attention_units=16",
    "model.dropout=0.0",
    "training.batch_size=8",
    "training.learning_rate=0.02",
    "training.early_stopping_patience=100",
    "training.epochs=40",
    "training.coverage_epochs=2",
    "decoding.beam_width=3",
    "decoding.max_length=6",
    "decoding.block_trigrams=false",
]


def frame(pairs):
    return pd.DataFrame(list(pairs), columns=["text", "summary"])


def corpus(pairs=PAIRS, copies=4):
    return Splits(frame(pairs * copies), frame(pairs), frame(pairs))


def tiny_model(vocabulary_size=12, cls=PointerGenerator, **options):
    keras.utils.set_random_seed(3)
    options = {
        "embedding_dim": 8, "encoder_units": 8, "decoder_units": 8, "attention_units": 8, "coverage": True, **options
    }  # fmt: skip
    if cls is PointerGenerator:
        model = cls(vocabulary_size, **options)
    else:
        model = cls(vocabulary_size, vocabulary_size, **options)
    model.build()
    return model


SOURCE = np.array([[5, 13, 6, 12, 3, 0], [4, 4, 3, 0, 0, 0]], np.int32)  # 12, 13: extended ids (V = 12)
TARGET_INPUT = np.array([[2, 5, 12, 0], [2, 4, 0, 0]], np.int32)
TARGET_OUTPUT = np.array([[5, 12, 3, 0], [4, 3, 0, 0]], np.int32)


def scores_by_hand(model, source, target_input):
    """log(p_gen softmax(logits) + (1 - p_gen) attention summed onto the ids), in float64 NumPy."""
    base = AttentionEncoderDecoder.output_scores
    outputs = AttentionEncoderDecoder.decoder_outputs(model, (tf.constant(source), tf.constant(target_input)))
    step = {key: outputs[key] for key in ("state", "context", "embedded", "attention", "source")}
    logits = np.asarray(base(model, model._logits(step["state"], step["context"], step["embedded"]), step), np.float64)
    p_gen = 1 / (1 + np.exp(-np.asarray(model.switch_logit(step), np.float64)))
    attention = np.asarray(step["attention"], np.float64)
    width = max(model.vocabulary_size, int(source.max()) + 1)
    probs = np.zeros(logits.shape[:2] + (width,))
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    probs[..., : logits.shape[-1]] = p_gen[..., None] * softmax / softmax.sum(-1, keepdims=True)
    for b, t, j in np.ndindex(attention.shape):
        probs[b, t, source[b, j]] += (1 - p_gen[b, t]) * attention[b, t, j]
    with np.errstate(divide="ignore"):
        return np.log(probs)


# === 1. the copy distribution ===


def test_the_copy_distribution_matches_the_hand_computation_and_sums_to_one():
    model = tiny_model()
    scores, attention = model((tf.constant(SOURCE), tf.constant(TARGET_INPUT)))
    scores = scores.numpy()
    assert scores.shape == (2, 4, 14)  # wider than the vocabulary: the largest extended id is 13
    np.testing.assert_allclose(np.exp(scores).sum(-1), 1.0, atol=1e-5)
    expected = scores_by_hand(model, SOURCE, TARGET_INPUT)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(scores), finite)
    np.testing.assert_allclose(scores[finite], expected[finite], atol=1e-5)
    # row 2 has no extended id in its source: those ids can never be output
    assert not finite[1, :, 12:].any() and finite[0].all()
    # the copy moves real mass: the source ids gain over a vocabulary-only distribution
    assert np.exp(scores[0, :, 13]).min() > 1e-3

    # decode_step gives the same scores step by step
    memory, keys, mask, state = model.encode(tf.constant(SOURCE))
    for t in range(TARGET_INPUT.shape[1]):
        step, state, weights = model.decode_step(
            tf.constant(TARGET_INPUT[:, t]), state, memory, keys, mask, source=tf.constant(SOURCE)
        )
        step = step.numpy()
        keep = [i for i in range(14) if i not in (PAD_ID, 2)]
        np.testing.assert_allclose(step[:, keep], scores[:, t, keep], atol=1e-5, err_msg=f"step {t}")
        np.testing.assert_allclose(weights.numpy(), attention[:, t].numpy(), atol=1e-6)


def test_a_saturated_switch_or_an_impossible_gold_token_gives_no_nan():
    model = tiny_model()
    batch = ((tf.constant(SOURCE), tf.constant(TARGET_INPUT)), tf.constant(TARGET_OUTPUT))
    for bias in (1e4, -1e4):  # p_gen exactly 1 (nothing copied) and exactly 0 (nothing generated) in float32
        model.switch.bias.assign([bias])
        with tf.GradientTape() as tape:
            loss_sum, nll_sum, count, extras = model._token_losses(batch, training=True)
        gradients = tape.gradient(loss_sum, model.trainable_variables)
        assert np.isfinite(float(loss_sum)) and np.isfinite(float(extras["coverage_loss"]))
        for gradient in gradients:
            if gradient is not None:
                assert np.isfinite(tf.convert_to_tensor(gradient).numpy()).all()
    # with p_gen = 1 the extended gold id 12 (only copyable) has probability exp(-1e4) = 0: still finite
    model.switch.bias.assign([1e4])
    scores, _ = model((tf.constant(SOURCE), tf.constant(TARGET_INPUT)))
    assert np.isfinite(scores.numpy()[0, 1, 12]) and scores.numpy()[0, 1, 12] < -1e3


def test_log_add_and_safe_log_are_exact_at_minus_infinity_with_finite_gradients():
    a = tf.constant([0.0, -np.inf, -np.inf, np.log(0.25)])
    b = tf.constant([-np.inf, 0.0, -np.inf, np.log(0.5)])
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        total = pointer_generator.log_add(a, b)
    np.testing.assert_allclose(total.numpy(), [0.0, 0.0, -np.inf, np.log(0.75)], rtol=1e-6)
    for gradient in tape.gradient(total, [a, b]):
        assert np.isfinite(gradient.numpy()).all()
    x = tf.constant([0.0, 0.5])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = pointer_generator.safe_log(x)
    assert y.numpy()[0] == -np.inf and y.numpy()[1] == pytest.approx(np.log(0.5))
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [0.0, 2.0])


def test_extended_ids_number_a_texts_unknown_words_in_order_of_first_occurrence():
    words = tf.constant([["a", "zz", "b", "zz", "yy", ""], ["yy", "a", "", "", "", ""]])
    ids = tf.constant([[5, UNK_ID, 6, UNK_ID, UNK_ID, 0], [UNK_ID, 5, 0, 0, 0, 0]])
    extended, oov_words = extend_ids(words, ids, 12)
    assert extended.numpy().tolist() == [[5, 12, 6, 12, 13, 0], [12, 5, 0, 0, 0, 0]]
    assert oov_words.numpy().tolist() == [[b"zz", b"yy", b""], [b"yy", b"", b""]]
    target = extend_target_ids(
        tf.constant([["yy", "a", "qq"], ["a", "yy", "zz"]]),
        tf.constant([[UNK_ID, 5, UNK_ID], [5, UNK_ID, UNK_ID]]),
        words, extended, 12,
    )  # fmt: skip
    # a target word takes its own text's id; one its text does not hold stays <unk>
    assert target.numpy().tolist() == [[13, 5, UNK_ID], [5, 12, UNK_ID]]


# === 2. coverage ===


def test_the_coverage_loss_is_the_hand_computation_and_weighs_by_the_models_weight():
    model = tiny_model()
    _, attention = model((tf.constant(SOURCE), tf.constant(TARGET_INPUT)))
    a = attention.numpy().astype(np.float64)
    total, count = 0.0, 0
    for b, t in np.ndindex(TARGET_OUTPUT.shape):
        if TARGET_OUTPUT[b, t] != PAD_ID:
            total += np.minimum(a[b, t], a[b, :t].sum(0)).sum()
            count += 1
    extras = model.extra_losses({"attention": attention}, tf.constant(TARGET_OUTPUT))
    assert float(extras["coverage_loss"]) == pytest.approx(total / count, rel=1e-5)
    assert total / count > 0.05
    assert float(model.extra_loss_weights()["coverage_loss"]) == 0.0  # until the coverage phase
    model.coverage_weight.assign(0.5)
    assert float(model.extra_loss_weights()["coverage_loss"]) == 0.5


def test_coverage_enters_the_attention_score():
    model = tiny_model()
    memory, keys, mask, (state, coverage) = model.encode(tf.constant(SOURCE))
    assert not coverage.numpy().any()
    model.attention.coverage_kernel.assign(tf.ones_like(model.attention.coverage_kernel) * 3.0)
    plain, _ = model.attention(state, memory, keys=keys, mask=mask, coverage=coverage)
    covered = tf.one_hot([0, 0], SOURCE.shape[1])  # position 0 fully attended before
    context, weights = model.attention(state, memory, keys=keys, mask=mask, coverage=covered)
    features = np.tanh(
        (state.numpy() @ model.attention.query_kernel.numpy())[:, None]
        + keys.numpy()
        + covered.numpy()[..., None] * 3.0
    )
    scores = features @ model.attention.score_vector.numpy()
    scores[~mask.numpy()] = -np.inf
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(weights.numpy(), expected / expected.sum(-1, keepdims=True), atol=1e-6)
    assert not np.allclose(context.numpy(), plain.numpy())


def history_of(run):
    return pd.read_csv(run.path / "history.csv")


def test_the_coverage_phase_follows_early_stopping_from_the_best_weights(tmp_path):
    """Early stopping ends the first phase; the phase trains coverage_epochs
    more epochs with the coverage weight, and its own best is kept."""
    overrides = [*TINY, "training.epochs=30", "training.early_stopping_patience=1"]
    # validation summaries in the other order: validation perplexity rises as training learns its order
    contrary = frame([(text, " ".join(reversed(summary.split()))) for text, summary in PAIRS])
    run = train_tiny(TASK, Splits(frame(PAIRS * 4), contrary, None), overrides, tmp_path / "run")
    history = history_of(run)
    weights = history["coverage_weight"].tolist()
    first = weights.index(1.0)
    assert weights[:first] == [0.0] * first and weights[first:] == [1.0, 1.0]
    assert first < 28  # early stopping, not the epoch budget, ended the first phase
    # the first phase stopped after its patience ran out
    best = history["val_perplexity"][:first].idxmin()
    assert first - 1 - best >= 1
    # the phase lowered the coverage loss
    assert history["coverage_loss"].iloc[-1] < history["coverage_loss"].iloc[first - 1]


def test_without_coverage_there_is_no_phase_and_no_coverage_metric(tmp_path):
    overrides = [*TINY, "model.coverage=false", "training.epochs=2"]
    run = train_tiny(TASK, corpus(), overrides, tmp_path / "run")
    history = history_of(run)
    assert "coverage_weight" not in history and "coverage_loss" not in history and len(history) == 2


# === 3. the task on an overfit model ===


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    calls = [
        (
            "beam_search",
            {
                "text": (TEXTS[:3], "string"), "beam_width": (3, "int32"), "n_best": (2, "int32"),
                "length_penalty": (0.6, "float32"), "coverage_penalty": (0.2, "float32"),
                "min_length": (1, "int32"), "max_length": (6, "int32"), "block_trigrams": (True, "bool"),
            },
        ),
        ("greedy", {"text": (TEXTS[:3], "string")}),
        ("attention", {"text": (TEXTS[:3], "string"), "summary": (SUMMARIES[:3], "string")}),
        ("decoding_defaults", {}),
    ]  # fmt: skip
    run = run_task_test(TASK, corpus(), TINY, TEXTS[:3], root, predict_options={"n_best": 2}, signature_calls=calls)
    return run


def test_an_overfit_model_reproduces_its_summaries(overfit):
    rows = overfit.predict(TEXTS)
    assert [row["text"] for row in rows] == SUMMARIES
    metrics = json.loads((overfit.path / "metrics.json").read_text())
    assert metrics["beam"]["rouge1"] == pytest.approx(1.0) and metrics["greedy"]["rougeL"] == pytest.approx(1.0)
    assert metrics["beam"]["copied_words"] == pytest.approx(1.0)  # both words of every summary are in its text
    # the lead baseline: the first 8 words (the default), scored by the same code
    expected_lead = summary_scores([lead(t, 8) for t in TEXTS], SUMMARIES, TEXTS)
    assert metrics["lead"]["rouge1"] == pytest.approx(expected_lead["rouge1"])
    lines = (overfit.path / "summaries.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["text", "reference", "beam", "greedy", "lead"]
    assert lines[1].split("\t")[2] == SUMMARIES[0] and len(lines) == len(PAIRS) + 1


def test_a_word_the_vocabulary_never_saw_is_copied(overfit):
    tokenizer = overfit.load().preprocessing.tokenizers["text"]
    assert tokenizer.tokenize(tf.constant(["okafor zimmermann"])).numpy().tolist() == [[UNK_ID, UNK_ID]]
    [row] = overfit.predict(["police in the city arrested zimmermann on monday after a long search"])
    assert row["text"] == "zimmermann arrested"
    exported = runs.load(overfit.path.parent / "export")  # the export writes it the same way
    [row] = exported.predict(["police in the city arrested zimmermann on monday after a long search"])
    assert row["text"] == "zimmermann arrested"


def test_beam_width_one_equals_greedy_and_n_best_is_ordered(overfit):
    greedy = overfit.predict(TEXTS, greedy=True)
    one = overfit.predict(TEXTS, beam_width=1, length_penalty=0.0)
    assert [r["text"] for r in one] == [r["text"] for r in greedy]
    np.testing.assert_allclose([r["score"] for r in one], [r["score"] for r in greedy], rtol=1e-5)
    for row in overfit.predict(TEXTS[:3], beam_width=3, n_best=3):
        scores = [score for _, score in row["n_best"]]
        assert scores == sorted(scores, reverse=True) and len(set(t for t, _ in row["n_best"])) == 3


def test_length_limits_and_trigram_blocking_reach_the_output(overfit):
    long_rows = overfit.predict(TEXTS[:2], min_length=5, max_length=6)
    for row in long_rows:
        assert 4 <= len(row["text"].split()) <= 6  # at least 4 words and </s>, at most 6 tokens
    short = overfit.predict(TEXTS[:2], max_length=1)
    assert all(len(row["text"].split()) == 1 for row in short)
    for row in overfit.predict(TEXTS[:4], min_length=6, max_length=6, block_trigrams=True):
        words = row["text"].split()
        grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        assert len(grams) == len(set(grams))


def test_the_attention_signature_gives_weights_and_p_gen_per_summary_token(overfit, tmp_path):
    _, signatures = TASK.serving_module(overfit.load())
    out = signatures["attention"](text=tf.constant(TEXTS[:2]), summary=tf.constant(SUMMARIES[:2]))
    weights, p_gen = out["weights"].numpy(), out["p_gen"].numpy()
    pieces = [p.decode() for p in out["summary_pieces"].numpy()[0]]
    assert pieces == ["okafor", "arrested", "</s>"]
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-5)
    assert ((p_gen >= 0) & (p_gen <= 1)).all()
    # the name is copied: most of its mass comes through the attention on the name's position
    text_pieces = [p.decode() for p in out["text_pieces"].numpy()[0]]
    assert text_pieces[weights[0, 0].argmax()] == "okafor" and p_gen[0, 0] < 0.5
    overfit.predict(TEXTS[:1], plot_attention=tmp_path / "attention.png")
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_texts_and_an_empty_batch_are_summarised_without_error(overfit):
    _, signatures = TASK.serving_module(overfit.load())
    out = signatures["serving_default"](text=tf.constant(["", "   ", TEXTS[0]]))
    assert out["summary"].shape == (3,) and out["summary"].numpy()[2].decode() == SUMMARIES[0]
    assert np.isfinite(out["score"].numpy()).all()
    empty = signatures["serving_default"](text=tf.zeros([0], tf.string))
    assert empty["summary"].shape == (0,) and empty["score"].shape == (0,)
    out = signatures["attention"](text=tf.constant([""]), summary=tf.constant([""]))
    assert [p.decode() for p in out["summary_pieces"].numpy()[0]] == ["</s>"]


def test_resume_after_an_interruption_at_the_coverage_phase_is_exact(tmp_path, interrupted_at_epoch):
    overrides = [*TINY, "training.epochs=4", "training.coverage_epochs=2"]  # the phase begins at epoch 2
    straight = train_tiny(TASK, corpus(), overrides, tmp_path / "straight").load()
    with interrupted_at_epoch(2):
        train_tiny(TASK, corpus(), overrides, tmp_path / "resumed")
    resumed = train_tiny(TASK, corpus(), overrides, tmp_path / "resumed").load()
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert history_of(resumed)["coverage_weight"].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_sentencepiece_copies_onto_the_texts_pieces(tmp_path):
    overrides = [*TINY, "tokenizer.kind=sentencepiece", "tokenizer.vocab_size=60", "training.epochs=1"]
    run = train_tiny(TASK, corpus(), overrides, tmp_path / "run")
    trained = run.load()
    module, _ = TASK.serving_module(trained)
    assert module.pointer and not module.copies_words
    ids, oov_words = module.source_ids(tf.constant(TEXTS[:2]))
    assert int(tf.reduce_max(ids)) < trained.preprocessing.tokenizers["text"].vocabulary_size()
    assert oov_words.shape[1] == 1
    rows = run.predict(TEXTS[:2])
    assert len(rows) == 2 and all(isinstance(row["text"], str) for row in rows)


# === 4. metrics ===


def test_rouge_lead_copy_and_repetition_by_hand():
    scores = summary_scores(["the cat sat", "dogs run"], ["the cat sat down", "a dog runs"], ["x", "dogs run far"])
    # ROUGE-1 F1: 2 * 3 / (3 + 4) and, with stemming (dogs -> dog, run/runs -> run), 2 * 2 / (2 + 3)
    assert scores["rouge1"] == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert lead(" a  b c d ", 2) == "a b"
    stats = copy_and_repetition(["a b c a b c", "x y"], ["a b", "q"])
    assert stats["copied_words"] == pytest.approx(4 / 8)
    assert stats["repeated_trigrams"] == pytest.approx(1 / 4)  # (a b c) twice among 4 trigrams
    assert stats["words"] == pytest.approx(4.0)


def test_the_config_refuses_label_smoothing_with_the_pointer_and_bad_lengths():
    with pytest.raises(ValueError, match="label_smoothing must be 0"):
        config_lib.resolve(SummarizationConfig, [], ["training.label_smoothing=0.1"])
    config_lib.resolve(SummarizationConfig, [], ["training.label_smoothing=0.1", "model.pointer=false"])
    with pytest.raises(ValueError, match="min_length"):
        config_lib.resolve(SummarizationConfig, [], ["decoding.min_length=10", "decoding.max_length=5"])


# === 5. the command line ===

NLPTOOL = str(Path(sys.executable).parent / "nlptool")  # the console script a user runs


def test_the_command_line_summarises_with_an_export_in_a_fresh_process(overfit):
    result = subprocess.run(
        [NLPTOOL, "summarize", str(overfit.path.parent / "export"), TEXTS[0], "--n-best", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[1] == SUMMARIES[0]
    bad = subprocess.run(
        [NLPTOOL, "summarize", str(overfit.path), TEXTS[0], "--greedy", "--max-length", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Greedy decoding takes the run's decoding settings" in bad.stderr


# === 6. data ===


def test_user_files_name_their_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    frame(PAIRS).rename(columns={"text": "article", "summary": "headline"}).to_csv(path, index=False)
    from nlptool.tasks.base import DataSource

    source = DataSource(train_file=str(path), columns={"text": "article", "summary": "headline"})
    splits = TASK.read_data(source, config_lib.resolve(SummarizationConfig, [], []))
    assert list(splits.train.columns) == ["text", "summary"] and len(splits.train) + len(splits.validation) == 8
    with pytest.raises(Exception, match="headline|summary"):
        TASK.read_data(DataSource(train_file=str(path), columns={"text": "article"}), SummarizationConfig())


def mirror_has(name):
    try:
        datasets.locate(name, download=False)
        return True
    except datasets.DatasetError:
        return False


@pytest.mark.skipif(not mirror_has("gigaword"), reason="no Gigaword in the data directories")
def test_gigaword_trains_on_the_validation_pools_without_test_articles():
    train, valid, test = (datasets.load("gigaword", split) for split in ("train", "valid", "test"))
    assert len(test) == 1951 and len(train) + len(valid) == 23084
    assert not (set(train["text"]) | set(valid["text"])) & set(test["text"])
    assert not set(train["text"]) & set(valid["text"])  # an article's headlines stay on one side
    assert 0.045 < len(valid) / (len(train) + len(valid)) < 0.055


@pytest.mark.skipif(not mirror_has("bbc_news_summary"), reason="no BBC News in the data directories")
def test_bbc_news_is_split_by_article():
    parts = {split: datasets.load("bbc_news_summary", split) for split in ("train", "valid", "test")}
    assert sum(len(p) for p in parts.values()) == 2225
    texts = {split: set(p["text"]) for split, p in parts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["valid"]
    assert len(parts["test"]) == pytest.approx(222, abs=10)


def test_a_dataset_without_a_download_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPTOOL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(datasets.DatasetError, match="has no download: Gigaword is licensed by the LDC"):
        datasets.load("gigaword", "test")


@pytest.mark.slow  # the translation recipe's test runs the same literate flow by default
def test_the_recipe_runs_on_a_tiny_setting(tmp_path):
    """recipes/summarization.py as a user runs it, on a CSV file with tiny sizes and two epochs."""
    path = tmp_path / "pairs.csv"
    frame(PAIRS * 3).rename(columns={"text": "article", "summary": "headline"}).to_csv(path, index=False)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "summarization.py"
    sets = [s for s in TINY if not s.startswith("training.epochs")] + ["training.epochs=2"]
    run = tmp_path / "run"
    args = [sys.executable, str(recipe), "--train-file", str(path), "--text-column", "article"]
    args += ["--summary-column", "headline", "--test-file", str(path), "--run-dir", str(run)]
    args += [a for s in sets for a in ("--set", s)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("first training pair: 'police in the city arrested ")
    assert any(line.startswith("test: 24 pairs, perplexity ") and "ROUGE-1/2/L" in line for line in lines)
    assert f"Exported to {run / 'export' / '1'}" in lines
    assert lines[-1].startswith("Attention and p_gen of '") and lines[-1].endswith(f"drawn in {run / 'attention.png'}")
    assert (run / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = pd.read_csv(run / "history.csv")
    assert history["coverage_weight"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("length_penalty", float("nan"), "length_penalty must be >= 0"),
        ("coverage_penalty", float("nan"), "coverage_penalty must be >= 0"),
        ("min_length", 0, "min_length must be >= 1"),
        ("max_length", 0, r"max_length must be in \[1, 1024\]"),
        ("max_length", 1025, r"max_length must be in \[1, 1024\]"),
        ("beam_width", 0, r"beam_width must be in \[1, 64\]"),
        ("beam_width", 65, r"beam_width must be in \[1, 64\]"),
    ],
)
def test_decoding_options_out_of_range_are_refused_by_the_export_and_the_api(overfit, option, value, message):
    export = runs.load(overfit.path.parent / "export")
    arguments = {
        "text": TEXTS[:1], "beam_width": 2, "n_best": 1, "length_penalty": 1.0, "coverage_penalty": 0.0,
        "min_length": 1, "max_length": 6, "block_trigrams": False, option: value,
    }  # fmt: skip
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        call_signature(export.signatures["beam_search"], **arguments)
    # the API checks the beam width with n_best, in one message
    api_message = r"Need a beam width in \[1, 64\] and 1 <= n_best" if option == "beam_width" else message
    with pytest.raises(UsageError, match=api_message):
        export.predict(TEXTS[:1], **{option: value})
