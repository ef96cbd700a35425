"""Sentiment end to end on tiny models: training, exact resume, fine-tuning
with a new label set, evaluation files, export in a fresh process, the CLI."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import io
import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from harness import call_export, run_task_test

from nlptool import config as config_lib
from nlptool import runs, tasks, training
from nlptool.cli import main
from nlptool.errors import RunError, UsageError
from nlptool.export import ExportError
from nlptool.models.classifier import AdversarialClassifier, MaskedMaxMeanPooling, build_model, predict_probabilities
from nlptool.tasks.base import Splits
from nlptool.tasks.sentiment import SentimentConfig, training_length, validation_share

TASK = tasks.get("sentiment")
POSITIVE = ["good fun", "great cast", "lovely film", "fun and good", "great story", "lovely and great"]
NEGATIVE = ["dull plot", "bad acting", "boring film", "dull and bad", "awful story", "boring and awful"]


def tiny_overrides(**changes):
    return [
        "model.units=4",
        "model.embedding_dim=4",
        "model.dropout=0.2",
        "tokenizer.vocab_size=40",
        "training.batch_size=4",
        "training.epochs=3",
        "training.early_stopping_patience=10",
    ] + [f"{k}={v}" for k, v in changes.items()]


def tiny_config(**changes):
    return config_lib.resolve(SentimentConfig, [], tiny_overrides(**changes))


def frame(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


def binary_data():
    train = frame(POSITIVE * 2 + NEGATIVE * 2, ["pos"] * 12 + ["neg"] * 12)
    validation = frame(POSITIVE[:2] + NEGATIVE[:2], ["pos", "pos", "neg", "neg"])
    return Splits(train, validation, validation)


def train(config, data, run_dir, say=None, **options):
    """`runs.train` of the sentiment task, quietly; returns the Run."""
    return runs.train(TASK, config, data, run_dir, options=options, verbose=0, say=say or (lambda *args: None))


@pytest.fixture
def fitted(monkeypatch):
    """The models `training.fit` trained, in order: what a training leaves in memory."""
    models, real = [], training.fit

    def recording(model, *args, **kwargs):
        models.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(training, "fit", recording)
    return models


def test_masked_pooling_ignores_padding():
    x = np.array([[[1.0, -5.0], [3.0, 2.0], [9.0, 9.0]], [[-1.0, -2.0], [0.0, 0.0], [0.0, 0.0]]], "float32")
    mask = np.array([[True, True, False], [True, False, False]])
    out = MaskedMaxMeanPooling()(tf.constant(x), mask=tf.constant(mask)).numpy()
    np.testing.assert_allclose(out, [[3.0, 2.0, 2.0, -1.5], [-1.0, -2.0, -1.0, -2.0]])


def test_word_dropout_zeroes_whole_tokens_in_training_only():
    config = tiny_config(**{"model.embedding_dropout": 0.5, "model.embedding_dim": 6})
    model = build_model(config, vocabulary_size=40, num_classes=2)
    ids = np.arange(1, 33, dtype="int32").reshape(2, 16)
    embedded = model.get_layer("embedding")(ids)
    dropped = model.get_layer("embedding_dropout")(embedded, training=True).numpy()
    kept = np.any(dropped != 0, axis=-1)  # (batch, time): was the token kept?
    # a token is kept or dropped as a whole, and kept vectors are scaled by 1 / (1 - rate)
    np.testing.assert_allclose(dropped[kept], 2 * embedded.numpy()[kept], rtol=1e-6)
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(model.get_layer("embedding_dropout")(embedded, training=False), embedded)
    # inference never drops: the model gives the same output twice
    np.testing.assert_array_equal(model(ids, training=False), model(ids, training=False))


def test_training_learns_and_fills_the_run_directory(tmp_path):
    path = tmp_path / "run"
    run = train(tiny_config(**{"training.epochs": 8, "training.learning_rate": 0.05}), binary_data(), path)
    history = pd.read_csv(path / "history.csv")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    # training evaluated the test data it was given (here the validation frame) into metrics.json
    assert run.metrics["split"] == "test" and run.metrics["accuracy"] == 1.0
    metrics = run.evaluate(binary_data().validation, "validation")
    assert metrics["split"] == "validation" and metrics["examples"] == 4
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == {"labels": ["neg", "pos"], "matrix": [[2, 0], [0, 2]]}
    written = json.loads((path / "metrics.json").read_text())
    assert written["accuracy"] == 1.0 and written["split"] == "validation"
    for name in (
        "run.json",
        "config.yaml",
        "tokenizer.json",
        "labels.json",
        "training.json",
        "checkpoints/best.weights.h5",
        "confusion_matrix.png",
        "training_curves.png",
    ):
        assert (path / name).is_file(), name
    assert any((path / "logs").rglob("*tfevents*"))  # TensorBoard
    assert json.loads((path / "training.json").read_text())["train_examples"] == 24
    assert runs.Run.open(path).finished and runs.Run.open(path).config == run.config


@pytest.mark.parametrize(
    "rows, classes, share",
    [
        (300, 2, 0.25),  # 100 rows wanted, a quarter of 300 at most
        (2_000, 6, 0.1),  # a tenth: 200 rows, more than 30 a class
        (1_000, 20, 0.25),  # 600 wanted for 20 classes, a quarter at most
        (5_000, 6, 0.1),
        (200_000, 2, 0.025),  # 5,000 rows at most
    ],
)
def test_the_validation_share_a_config_leaves_null(rows, classes, share):
    assert validation_share(rows, classes) == share


@pytest.mark.parametrize(
    "train_rows, epochs, patience",
    [
        (64_000, 3, 2),  # SST-2: 1,000 steps an epoch, at least 3 epochs
        (22_500, 9, 4),  # IMDB: 352 steps an epoch, 3,000 steps in 9
        (4_500, 30, 4),  # 71 steps an epoch: 43 epochs wanted, 30 at most
        (200_000, 3, 2),
    ],
)
def test_the_training_length_a_config_leaves_null(train_rows, epochs, patience):
    assert training_length(train_rows, 64) == (epochs, patience)


def test_settings_left_null_are_chosen_from_the_data_said_and_recorded(tmp_path):
    said = []
    overrides = [o for o in tiny_overrides() if not o.startswith(("training.epochs", "training.early_stopping"))]
    config = config_lib.resolve(SentimentConfig, [], overrides)
    assert config.training.epochs is None and config.training.validation_fraction is None
    texts, labels = POSITIVE * 20 + NEGATIVE * 20, ["pos"] * 120 + ["neg"] * 120
    run = train(config, TASK.from_frames(frame(texts, labels), config=config), tmp_path / "run", say=said.append)
    # 240 rows of 2 classes: 100 wanted, a quarter (60) held out; 180 / 4 = 45 steps an epoch, 30 epochs
    assert (
        "settings for 180 training rows and 2 classes: up to 30 epochs, early stopping after 4 without gain, "
        "60 rows (25.0 %) for validation (set training.epochs, training.early_stopping_patience, "
        "training.validation_fraction to choose)" in said
    )
    recorded = runs.Run.open(run.path).config.training
    assert (recorded.epochs, recorded.early_stopping_patience, recorded.validation_fraction) == (30, 4, 0.25)
    said.clear()
    chosen = tiny_config(**{"training.validation_fraction": 0.25, "training.epochs": 1})
    train(chosen, TASK.from_frames(frame(texts, labels), config=chosen), tmp_path / "other", say=said.append)
    assert not any(line.startswith("settings for") for line in said)


@pytest.mark.parametrize(
    "changes",
    [
        # without dropout and with adversarial training the flow is the same as with dropout: in the slow run
        pytest.param({"model.dropout": 0.0}, marks=pytest.mark.slow),
        {"model.dropout": 0.2},
        {"training.ema_momentum": 0.9},
        pytest.param({"training.adversarial_epsilon": 2.0}, marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_resume_after_interruption_gives_the_uninterrupted_weights(tmp_path, interrupted_at_epoch, fitted, changes):
    config, data = tiny_config(**changes), binary_data()
    train(config, data, tmp_path / "straight")
    reference = fitted[-1]

    with interrupted_at_epoch(2):
        train(config, data, tmp_path / "interrupted")
    history = pd.read_csv(tmp_path / "interrupted" / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # it really stopped after two epochs
    assert not runs.Run.open(tmp_path / "interrupted").finished
    said = []
    run = train(config, data, tmp_path / "interrupted", say=said.append)
    assert f"resuming {tmp_path / 'interrupted'}" in said  # the same request resumed, not started afresh
    resumed = fitted[-1]
    resumed_history = pd.read_csv(tmp_path / "interrupted" / "history.csv")
    assert resumed_history["epoch"].tolist() == [0, 1, 2]
    # every epoch's training loss (the weights as trained) and validation loss (with averaging, the average's)
    pd.testing.assert_frame_equal(resumed_history, pd.read_csv(tmp_path / "straight" / "history.csv"))
    # the weights training ends with, and the best checkpoint
    for a, b in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    straight = runs.Run.open(tmp_path / "straight").load().model
    for a, b in zip(run.load().model.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [0, 1, 1.5])
def test_ema_momentum_outside_zero_one_is_a_config_error(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*ema_momentum must be in \(0, 1\)"):
        tiny_config(**{"training.ema_momentum": value})
    assert tiny_config(**{"training.ema_momentum": "null"}).training.ema_momentum is None


@pytest.mark.parametrize("value", [0, -1])
def test_adversarial_epsilon_must_be_positive(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*adversarial_epsilon must be > 0"):
        tiny_config(**{"training.adversarial_epsilon": value})


def _ids():
    ids = np.random.default_rng(0).integers(1, 40, size=(6, 9)).astype("int32")
    ids[:2, 5:] = 0  # two padded texts
    return ids


@pytest.mark.parametrize(
    "changes",
    [{}, {"model.pooling": "last", "model.layers": 2}, {"model.embedding_dropout": 0.2, "model.bidirectional": False}],
    ids=str,
)
def test_adversarial_classifier_predicts_as_the_plain_model(changes):
    plain = build_model(tiny_config(**changes), vocabulary_size=40, num_classes=2)
    adversarial = build_model(
        tiny_config(**changes, **{"training.adversarial_epsilon": 1.0}), vocabulary_size=40, num_classes=2
    )
    assert isinstance(adversarial, AdversarialClassifier) and not isinstance(plain, AdversarialClassifier)
    adversarial.set_weights(plain.get_weights())  # the same weights, in the same layout
    ids = _ids()
    np.testing.assert_array_equal(adversarial(ids, training=False), plain(ids, training=False))
    embedding = adversarial.get_layer("embedding")
    from_vectors = adversarial.from_embeddings(embedding(ids), embedding.compute_mask(ids), training=False)
    np.testing.assert_allclose(from_vectors, plain(ids, training=False), atol=1e-7)


def test_adversarial_perturbation_has_its_size_and_raises_the_loss():
    config = tiny_config(**{"training.adversarial_epsilon": 0.5, "model.dropout": 0.0, "model.embedding_dim": 8})
    model = build_model(config, vocabulary_size=40, num_classes=2)
    ids, labels = _ids(), np.array([0, 1, 0, 1, 1, 0])
    embedding = model.get_layer("embedding")
    vectors, mask = embedding(ids), embedding.compute_mask(ids)

    def losses(x):  # per text
        return keras.losses.sparse_categorical_crossentropy(labels, model.from_embeddings(x, mask, training=False))

    with tf.GradientTape() as tape:
        tape.watch(vectors)
        loss = tf.reduce_mean(losses(vectors))
    r = model.perturbation(vectors, tape.gradient(loss, vectors), mask).numpy()

    def norms(x):  # per text, over its whole (time, features) block
        return np.linalg.norm(x.reshape(len(x), -1), axis=1)[:, None, None]

    valid = mask.numpy()
    sigma = np.std(vectors.numpy()[valid])
    np.testing.assert_allclose(norms(r), 0.5 * sigma, rtol=1e-5)
    assert not r[~valid].any()  # padding never moves
    # the gradient's direction raises every text's loss more than random directions of the same size
    raised = (losses(vectors + r) - losses(vectors)).numpy()
    rng = np.random.default_rng(1)
    for _ in range(5):
        noise = rng.normal(size=r.shape).astype("float32") * valid[..., None]
        noise *= norms(r) / norms(noise)
        assert np.all(raised > (losses(vectors + noise) - losses(vectors)).numpy())


@pytest.mark.parametrize("epsilon", [1e-4, 3.0])
def test_adversarial_step_trains_on_the_clean_and_the_moved_loss(epsilon):
    """One SGD step on the clean plus the adversarial loss: with a vanishing
    epsilon that is a plain step on twice the loss; a large one differs."""
    ids, labels = _ids(), np.array([0, 1, 0, 1, 1, 0])
    config = tiny_config(**{"model.dropout": 0.0, "training.adversarial_epsilon": epsilon})
    adversarial = build_model(config, vocabulary_size=40, num_classes=2)
    plain = build_model(tiny_config(**{"model.dropout": 0.0}), vocabulary_size=40, num_classes=2)
    plain.set_weights(adversarial.get_weights())
    before = float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, plain(ids))))
    for model, rate in ((adversarial, 0.5), (plain, 1.0)):
        model.compile(optimizer=keras.optimizers.SGD(rate), loss="sparse_categorical_crossentropy")
        history = model.fit(ids, labels, batch_size=6, epochs=1, shuffle=False, verbose=0)
        assert history.history["loss"][0] == pytest.approx(before, rel=1e-5)  # the logged loss is the clean one
    differences = [np.abs(a - b).max() for a, b in zip(adversarial.get_weights(), plain.get_weights(), strict=True)]
    if epsilon < 1e-3:
        assert max(differences) < 1e-4
    else:
        assert max(differences) > 1e-3


class _StepWeights(keras.callbacks.Callback):
    """The trainable weights after every training step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])


def test_averaged_weights_are_what_validation_and_the_checkpoint_see(tmp_path, monkeypatch, fitted):
    momentum, data = 0.8, binary_data()
    recorders, real = [], training.callbacks

    def with_recorder(*args, **kwargs):
        recorders.append(_StepWeights())
        return real(*args, **kwargs) + [recorders[-1]]

    monkeypatch.setattr(training, "callbacks", with_recorder)
    train(tiny_config(), data, tmp_path / "plain")
    run = train(tiny_config(**{"training.ema_momentum": momentum}), data, tmp_path / "averaged")
    model = fitted[-1]  # what training left in memory
    returned = [v.numpy().copy() for v in model.trainable_variables]
    plain, averaged = recorders
    # averaging leaves the training itself alone: the same weights after every step
    assert len(averaged.steps) == len(plain.steps) == 3 * 6
    for a, b in zip(averaged.steps, plain.steps, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    # the average by its definition, starting from the weights after the first step
    average, at_epoch_end = plain.steps[0], []
    for step, weights in enumerate(plain.steps):
        if step:
            average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
        if step % 6 == 5:
            at_epoch_end.append(average)
    history = pd.read_csv(tmp_path / "averaged" / "history.csv")
    saved = run.load()
    tokenizer, label_map = saved.preprocessing.tokenizers["text"], saved.preprocessing.labels
    texts, labels = data.validation["text"].tolist(), label_map.encode(data.validation["label"])
    for epoch, weights in enumerate(at_epoch_end):  # validation scored the average
        for variable, value in zip(model.trainable_variables, weights, strict=True):
            variable.assign(value)
        probabilities = predict_probabilities(model, tokenizer, texts, 256)
        loss = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
        np.testing.assert_allclose(history["val_loss"][epoch], loss, rtol=1e-5)
    assert not np.allclose(history["val_loss"], pd.read_csv(tmp_path / "plain" / "history.csv")["val_loss"])
    # the checkpoint, and what training leaves in memory, is the average of the first best epoch
    best = int(np.argmax(history["val_accuracy"].to_numpy()))
    for variable, value, kept in zip(saved.model.trainable_variables, at_epoch_end[best], returned, strict=True):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(kept, variable.numpy())


def test_fine_tuning_with_a_new_label_set_rebuilds_only_the_head(tmp_path, fitted):
    base_run = train(tiny_config(), binary_data(), tmp_path / "base")
    base = base_run.load()
    three = frame(POSITIVE + NEGATIVE + ["so so", "fine I guess", "meh"] * 2, ["pos"] * 6 + ["neg"] * 6 + ["mixed"] * 6)
    # learning rate 0: after "training", every kept weight is still the base run's
    run = train(
        tiny_config(**{"training.learning_rate": 0.0}),
        Splits(three, three, None),
        tmp_path / "tuned",
        init_from=tmp_path / "base",
    )
    tuned = run.load()
    assert sorted(tuned.preprocessing.labels.names) == ["mixed", "neg", "pos"]
    for model in (fitted[-1], tuned.model):  # in memory after training, and the checkpoint
        assert model.get_layer("classifier").get_weights()[0].shape[-1] == 3
        for layer in base.model.layers:
            if layer.name != "classifier":
                for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights(), strict=True):
                    np.testing.assert_array_equal(a, b)
    base_tokenizer = runs.Run.open(tmp_path / "base").load().preprocessing.tokenizers["text"]
    assert tuned.preprocessing.tokenizers["text"].get_config() == base_tokenizer.get_config()
    assert json.loads((run.path / "run.json").read_text())["options"] == {"init_from": str(tmp_path / "base")}


def test_fine_tuning_takes_the_shape_of_the_run_it_starts_from(tmp_path, fitted):
    # an IMDB run at width 8 fine-tuned with SST-2's config (width 4): the weights decide the shape
    base_config = tiny_config(**{"model.units": 8, "model.embedding_dim": 6, "model.pooling": "last"})
    base_run = train(base_config, binary_data(), tmp_path / "base")
    base = fitted[-1]
    tuned_config = tiny_config(**{"training.learning_rate": 0.0, "model.dropout": 0.5, "tokenizer.max_length": 7})
    tuned_run = train(tuned_config, binary_data(), tmp_path / "tuned", init_from=tmp_path / "base")
    tuned = fitted[-1]
    for a, b in zip(base.get_weights(), tuned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    saved = config_lib.resolve(SentimentConfig, [tmp_path / "tuned" / "config.yaml"])
    assert (saved.model.units, saved.model.embedding_dim, saved.model.pooling) == (8, 6, "last")
    assert (saved.model.dropout, saved.tokenizer.max_length) == (0.5, 7)  # this run's own
    assert runs.Run.open(tmp_path / "tuned").config == saved
    texts = ["great fun", "dull and boring"]
    assert tuned_run.predict(texts) == base_run.predict(texts)


def test_other_data_in_memory_do_not_resume_an_interrupted_run(tmp_path, interrupted_at_epoch):
    with interrupted_at_epoch(1):
        train(tiny_config(), binary_data(), tmp_path / "run")
    files = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    other = frame(["one two", "three four"] * 4, ["yes", "no"] * 4)
    with pytest.raises(RunError, match="data"):
        train(tiny_config(), Splits(other, other), tmp_path / "run")
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == files


def test_starting_from_a_sentiment_run_and_a_language_model_at_once_is_refused(tmp_path):
    # the command line makes the two flags exclusive; in Python the task refuses them before reading either run
    options = {"init_from": tmp_path / "sentiment_run", "init_encoder_from": tmp_path / "language_model"}
    with pytest.raises(UsageError, match=r"--init-from.*--init-encoder-from.*not both"):
        train(tiny_config(), binary_data(), tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "changes", [{}, pytest.param({"training.adversarial_epsilon": 1.0}, marks=pytest.mark.slow)], ids=str
)
def test_export_in_a_fresh_process_matches_predict(tmp_path, changes):
    texts = ["great fun", "dull and boring", "an unknown word"]
    # the task contract: training, the config and .keras round trips, the export in a process without
    # nlptool, and the same predictions from the run, the loaded export and that process
    # (both loaders, saved_model_cli show and run)
    run = run_task_test(
        TASK, binary_data(), tiny_overrides(**changes), texts, tmp_path, signature_calls=[("class_names", {})]
    )
    export = tmp_path / "export"
    trained = run.load()
    assert isinstance(trained.model, AdversarialClassifier) == bool(changes)
    # and the same as the model on its own, outside any serving module
    tokenizer = trained.preprocessing.tokenizers["text"]
    expected = predict_probabilities(trained.model, tokenizer, texts, trained.config.tokenizer.max_length)
    served, names = call_export(export, [("serving_default", {"text": (texts, "string")}), ("class_names", {})])
    assert names["class_names"] == trained.preprocessing.labels.names == ["neg", "pos"]
    assert served["label"] == trained.preprocessing.labels.decode(expected.argmax(axis=1))
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    rows = runs.load(export).predict(texts)
    assert [row["label"] for row in rows] == served["label"]
    np.testing.assert_allclose([row["probability"] for row in rows], expected.max(axis=1), atol=1e-5)
    with pytest.raises(ExportError, match="already exists"):
        run.export(export, version=1)


# === The command line ===

TINY_FLAGS = ["--set", "model.units=4", "--set", "model.embedding_dim=4", "--set", "tokenizer.vocab_size=40"]


def review_frame(repeat=3):
    rows = [(t, "pos") for t in POSITIVE * repeat] + [(t, "neg") for t in NEGATIVE * repeat]
    return pd.DataFrame(rows, columns=["review", "sentiment"])


@pytest.fixture
def csv_files(tmp_path):
    train = tmp_path / "train.csv"
    review_frame().to_csv(train, index=False)
    return train


def train_args(train_file, run, *extra):
    return [
        "train",
        "sentiment",
        "--train-file",
        str(train_file),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
        *TINY_FLAGS,
        "--epochs",
        "1",
        "--run-dir",
        str(run),
        *extra,
    ]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A run the CLI trained on a CSV with the columns `review` and `sentiment`, with no test file."""
    folder = tmp_path_factory.mktemp("cli_run")
    train_file = folder / "train.csv"
    review_frame().to_csv(train_file, index=False)
    assert main(train_args(train_file, folder / "run")) == 0
    return folder / "run"


def test_cli_train_evaluate_export_predict(csv_files, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "export"
    common = [
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
        "--set",
        "model.units=4",
        "--set",
        "tokenizer.vocab_size=40",
        "--epochs",
        "2",
        "--max-train-examples",
        "20",
    ]
    assert (
        main(
            [
                "train",
                "sentiment",
                "--train-file",
                str(csv_files),
                "--test-file",
                str(csv_files),
                *common,
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    trained = capsys.readouterr().out
    # 36 rows of 2 classes: a quarter held out (9), then the first 20 of the rest trained on (--max-train-examples)
    assert "20 training, 9 validation, 36 test examples" in trained
    assert (
        "settings for 20 training rows and 2 classes: early stopping after 4 without gain, "
        "9 rows (31.0 %) for validation" in trained
    )
    assert "test: 36 examples, accuracy" in trained
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert json.loads((run / "training.json").read_text())["train_examples"] == 20
    assert main(["evaluate", str(run)]) == 0  # the test file and the columns the run recorded
    assert f"{csv_files.resolve()}: 36 examples, accuracy" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["examples"] == 36 and metrics["split"] == str(csv_files.resolve())
    assert main(["export", str(run), str(out)]) == 0
    assert main(["export", str(run), str(out), "--version", "1"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(run), str(out), "--version", "1", "--overwrite"]) == 0
    assert main(["export", str(run), str(out)]) == 0  # the next version
    assert sorted(p.name for p in out.iterdir()) == ["1", "2"]  # nothing else: no staging folder left
    capsys.readouterr()
    assert main(["predict", str(out), "great fun"]) == 0
    line = capsys.readouterr().out.strip()
    label, probability, text = line.split("\t")
    assert label in {"pos", "neg"} and 0.5 <= float(probability) <= 1.0 and text == "great fun"
    assert main(["predict", str(run), "great fun"]) == 0  # the run predicts as its export
    assert capsys.readouterr().out.strip() == line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text-column", "text", "--label-column", "sentiment"], "no column 'text'"),
        (["--text-column", "review", "--label-column", "sentiment", "--set", "model.unitz=3"], "model.unitz"),
        (["--text-column", "review", "--label-column", "stars"], "no column 'stars'"),
    ],
)
def test_cli_bad_input_leaves_no_run_directory(csv_files, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "sentiment", "--train-file", str(csv_files), *args, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("nlptool: error: ") and err.count("\n") == 1
    assert not run.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text-column", "review", "--label-column", "review"], "--label-column"),
        (["--text-column", "review", "--label-column", "sentiment", "--delimiter", ";;"], "delimiter"),
    ],
)
def test_cli_bad_column_or_delimiter_arguments_exit_2(csv_files, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "sentiment", "--train-file", str(csv_files), *args, "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("nlptool: error: ") and err.count("\n") == 1
    assert not run.exists()


def test_cli_train_help_shows_only_sentiment_options_with_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "sentiment", "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--train-file", "--test-file", "--text-column", "--label-column", "--run-dir", "--overwrite"):
        assert flag in shown, flag
    for flag in ("--init-from", "--init-encoder-from"):  # sentiment's own
        assert flag in shown, flag
    assert "(default: text)" in shown and "(default: label)" in shown
    for foreign in ("--source-lang", "--target-lang", "--source-column", "--max-new-tokens", "--beam-width"):
        assert foreign not in shown, foreign


def test_cli_train_help_imports_no_tensorflow():
    script = """
import contextlib, io, sys
from nlptool.cli import main
with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.suppress(SystemExit):
    main(["train", "sentiment", "--help"])
assert "--init-from" in shown.getvalue()
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_cli_refuses_a_run_directory_of_other_settings_and_overwrite_starts_afresh(csv_files, tmp_path, capsys):
    run = tmp_path / "run"
    first = train_args(csv_files, run, "--test-file", str(csv_files))
    assert main(first) == 0
    assert main(["export", str(run)]) == 0
    assert (run / "metrics.json").is_file() and (run / "export" / "1" / "saved_model.pb").is_file()
    capsys.readouterr()
    files = {path: path.stat().st_mtime_ns for path in run.rglob("*")}

    # the same command again: the run is finished
    assert main(first) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--overwrite" in err and err.count("\n") == 1
    # another config: refused, naming the key that differs
    assert main([*first, "--set", "model.units=5"]) == 2
    err = capsys.readouterr().err
    assert "config.model.units: 4 in the run, 5 now" in err and "--overwrite" in err and err.count("\n") == 1
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == files  # nothing touched

    # --overwrite: a new run, without a file of the old one (no test file now, so no metrics.json)
    assert main(train_args(csv_files, run, "--set", "model.units=5", "--overwrite")) == 0
    for stale in ("metrics.json", "export", "confusion_matrix.png"):
        assert not (run / stale).exists(), stale
    assert len(pd.read_csv(run / "history.csv")) == 1  # the new run's one epoch, not appended to the old
    assert runs.Run.open(run).config.model.units == 5
    assert json.loads((run / "run.json").read_text())["data"]["test_file"] is None


def test_cli_evaluate_another_file_reuses_the_runs_columns(cli_run, tmp_path, capsys):
    other = tmp_path / "other.csv"
    review_frame(repeat=1).iloc[2:10].to_csv(other, index=False)  # the columns `review` and `sentiment` only
    capsys.readouterr()
    assert main(["evaluate", str(cli_run), "--test-file", str(other)]) == 0
    assert f"{other.resolve()}: 8 examples, accuracy" in capsys.readouterr().out
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert metrics["examples"] == 8 and metrics["split"] == str(other.resolve())
    # a column given to evaluate replaces the run's for that role only
    renamed = tmp_path / "renamed.csv"
    review_frame(repeat=1).rename(columns={"review": "body"}).to_csv(renamed, index=False)
    assert main(["evaluate", str(cli_run), "--test-file", str(renamed), "--text-column", "body"]) == 0
    assert "12 examples" in capsys.readouterr().out
    # without data: the run was trained without a test file, so evaluate says what to pass
    assert main(["evaluate", str(cli_run)]) == 2
    assert "--test-file" in capsys.readouterr().err


def test_cli_predict_reads_standard_input_and_files(cli_run, tmp_path, capsys, monkeypatch):
    texts = ["great fun", "dull and boring", "an unknown word"]
    assert main(["predict", str(cli_run), *texts]) == 0
    expected = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[-1] for line in expected] == texts
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(text + "\n" for text in texts)))
    assert main(["predict", str(cli_run), "-"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["predict", str(cli_run), "--input", str(lines)]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert main(["predict", str(cli_run), "--input", str(lines), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["input"] for row in rows] == texts
    assert [f"{row['label']}\t{row['probability']:.4f}\t{row['input']}" for row in rows] == expected
    assert all(sorted(row["probabilities"]) == ["neg", "pos"] for row in rows)


@pytest.mark.parametrize("command", ["generate", "translate"])
def test_cli_other_tasks_commands_refuse_a_sentiment_run(cli_run, capsys, command):
    assert main([command, str(cli_run), "great fun"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("nlptool: error: ")
    assert "is a sentiment run" in err and f"nlptool predict {cli_run}" in err


def test_cli_trains_alike_on_csv_tsv_and_json_lines(tmp_path, capsys):
    data = review_frame()
    files = {
        "csv": tmp_path / "train.csv",
        "tsv": tmp_path / "train.tsv",
        "jsonl": tmp_path / "train.jsonl",
    }
    data.to_csv(files["csv"], index=False)
    data.to_csv(files["tsv"], sep="\t", index=False)
    data.to_json(files["jsonl"], orient="records", lines=True)
    histories, predictions = {}, {}
    for kind, path in files.items():
        run = tmp_path / f"run_{kind}"
        assert main(train_args(path, run, "--test-file", str(path))) == 0, kind
        assert "test: 36 examples, accuracy" in capsys.readouterr().out
        assert json.loads((run / "run.json").read_text())["data"]["train_file"] == str(path.resolve())
        histories[kind] = pd.read_csv(run / "history.csv")
        assert main(["predict", str(run), "great fun", "dull and boring"]) == 0
        predictions[kind] = capsys.readouterr().out
    # the same rows in any format: the same training, to the last digit
    for kind in ("tsv", "jsonl"):
        pd.testing.assert_frame_equal(histories[kind], histories["csv"])
        assert predictions[kind] == predictions["csv"]
