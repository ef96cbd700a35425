"""Sentiment end to end on tiny models: training, exact resume, fine-tuning
with a new label set, evaluation files, export in a fresh process, the CLI."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import training
from nlptool.cli import main
from nlptool.data.csv import LabeledData, LabelMap
from nlptool.tasks import sentiment_steps as steps
from nlptool.tasks.sentiment import AdversarialClassifier, MaskedMaxMeanPooling, SentimentConfig, build_model

POSITIVE = ["good fun", "great cast", "lovely film", "fun and good", "great story", "lovely and great"]
NEGATIVE = ["dull plot", "bad acting", "boring film", "dull and bad", "awful story", "boring and awful"]


def tiny_config(**changes):
    overrides = [
        "model.units=4",
        "model.embedding_dim=4",
        "model.dropout=0.2",
        "tokenizer.vocab_size=40",
        "training.batch_size=4",
        "training.epochs=3",
        "training.early_stopping_patience=10",
    ] + [f"{k}={v}" for k, v in changes.items()]
    return config_lib.resolve(SentimentConfig, [], overrides)


def frame(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


def binary_data():
    train = frame(POSITIVE * 2 + NEGATIVE * 2, ["pos"] * 12 + ["neg"] * 12)
    validation = frame(POSITIVE[:2] + NEGATIVE[:2], ["pos", "pos", "neg", "neg"])
    return LabeledData(train, validation, validation, LabelMap.from_labels(train["label"]))


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
    run = tmp_path / "run"
    steps.train(tiny_config(**{"training.epochs": 8, "training.learning_rate": 0.05}), binary_data(), run, verbose=0)
    history = pd.read_csv(run / "history.csv")
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    metrics = steps.evaluate(run, binary_data().validation, "validation")
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == {"labels": ["neg", "pos"], "matrix": [[2, 0], [0, 2]]}
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == 1.0
    for name in (
        "config.yaml",
        "tokenizer.json",
        "labels.json",
        "checkpoints/best.weights.h5",
        "confusion_matrix.png",
        "training_curves.png",
    ):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("*tfevents*"))  # TensorBoard


@pytest.mark.parametrize(
    "changes",
    [
        {"model.dropout": 0.0},
        {"model.dropout": 0.2},
        {"training.ema_momentum": 0.9},
        {"training.adversarial_epsilon": 2.0},
    ],
    ids=str,
)
def test_resume_after_interruption_gives_the_uninterrupted_weights(tmp_path, interrupted_at_epoch, changes):
    config, data = tiny_config(**changes), binary_data()
    reference, _ = steps.train(config, data, tmp_path / "straight", verbose=0)

    with interrupted_at_epoch(2):
        steps.train(config, data, tmp_path / "interrupted", verbose=0)
    history = pd.read_csv(tmp_path / "interrupted" / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # it really stopped after two epochs
    resumed, _ = steps.train(config, data, tmp_path / "interrupted", verbose=0)
    resumed_history = pd.read_csv(tmp_path / "interrupted" / "history.csv")
    assert resumed_history["epoch"].tolist() == [0, 1, 2]
    # every epoch's training loss (the weights as trained) and validation loss (with averaging, the average's)
    pd.testing.assert_frame_equal(resumed_history, pd.read_csv(tmp_path / "straight" / "history.csv"))
    for a, b in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [0, 1, 1.5])
def test_ema_momentum_outside_zero_one_is_a_config_error(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*ema_momentum must be between 0 and 1"):
        tiny_config(**{"training.ema_momentum": value})
    assert tiny_config(**{"training.ema_momentum": "null"}).training.ema_momentum is None


@pytest.mark.parametrize("value", [0, -1])
def test_adversarial_epsilon_must_be_positive(value):
    with pytest.raises(config_lib.ConfigError, match=r"training.*adversarial_epsilon must be positive"):
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


def test_averaged_weights_are_what_validation_and_the_checkpoint_see(tmp_path, monkeypatch):
    momentum, data = 0.8, binary_data()
    recorders, real = [], training.callbacks

    def with_recorder(*args, **kwargs):
        recorders.append(_StepWeights())
        return real(*args, **kwargs) + [recorders[-1]]

    monkeypatch.setattr(training, "callbacks", with_recorder)
    steps.train(tiny_config(), data, tmp_path / "plain", verbose=0)
    model, tokenizer = steps.train(
        tiny_config(**{"training.ema_momentum": momentum}), data, tmp_path / "averaged", verbose=0
    )
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
    texts, labels = data.validation["text"].tolist(), data.label_map.encode(data.validation["label"])
    for epoch, weights in enumerate(at_epoch_end):  # validation scored the average
        for variable, value in zip(model.trainable_variables, weights, strict=True):
            variable.assign(value)
        probabilities = steps.predict_probabilities(model, tokenizer, texts, 256)
        loss = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
        np.testing.assert_allclose(history["val_loss"][epoch], loss, rtol=1e-5)
    assert not np.allclose(history["val_loss"], pd.read_csv(tmp_path / "plain" / "history.csv")["val_loss"])
    # the checkpoint, and what train returns, is the average of the first best epoch
    best = int(np.argmax(history["val_accuracy"].to_numpy()))
    _, _, _, saved = steps.load_run(tmp_path / "averaged")
    for variable, value, kept in zip(saved.trainable_variables, at_epoch_end[best], returned, strict=True):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(kept, variable.numpy())


def test_fine_tuning_with_a_new_label_set_rebuilds_only_the_head(tmp_path):
    steps.train(tiny_config(), binary_data(), tmp_path / "base", verbose=0)
    _, _, _, base = steps.load_run(tmp_path / "base")
    three = frame(POSITIVE + NEGATIVE + ["so so", "fine I guess", "meh"] * 2, ["pos"] * 6 + ["neg"] * 6 + ["mixed"] * 6)
    data = LabeledData(three, three, None, LabelMap.from_labels(three["label"]))
    # learning rate 0: after "training", every kept weight is still the base run's
    tuned, tokenizer = steps.train(
        tiny_config(**{"training.learning_rate": 0.0}), data, tmp_path / "tuned", init_from=tmp_path / "base", verbose=0
    )
    assert tuned.get_layer("classifier").get_weights()[0].shape[-1] == 3
    for layer in base.layers:
        if layer.name != "classifier":
            for a, b in zip(layer.get_weights(), tuned.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
    assert tokenizer.get_config() == steps.load_run(tmp_path / "base")[1].get_config()


def test_fine_tuning_takes_the_shape_of_the_run_it_starts_from(tmp_path):
    # an IMDB run at width 8 fine-tuned with SST-2's config (width 4): the weights decide the shape
    base_config = tiny_config(**{"model.units": 8, "model.embedding_dim": 6, "model.pooling": "last"})
    base, _ = steps.train(base_config, binary_data(), tmp_path / "base", verbose=0)
    tuned_config = tiny_config(**{"training.learning_rate": 0.0, "model.dropout": 0.5, "tokenizer.max_length": 7})
    tuned, _ = steps.train(tuned_config, binary_data(), tmp_path / "tuned", init_from=tmp_path / "base", verbose=0)
    for a, b in zip(base.get_weights(), tuned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    saved = config_lib.resolve(SentimentConfig, [tmp_path / "tuned" / "config.yaml"])
    assert (saved.model.units, saved.model.embedding_dim, saved.model.pooling) == (8, 6, "last")
    assert (saved.model.dropout, saved.tokenizer.max_length) == (0.5, 7)  # this run's own
    texts = ["great fun", "dull and boring"]
    np.testing.assert_array_equal(steps.predict(tmp_path / "tuned", texts), steps.predict(tmp_path / "base", texts))


@pytest.mark.parametrize("changes", [{}, {"training.adversarial_epsilon": 1.0}], ids=str)
def test_export_in_a_fresh_process_matches_predict(tmp_path, changes):
    run = tmp_path / "run"
    steps.train(tiny_config(**changes), binary_data(), run, verbose=0)
    steps.export(run, tmp_path / "export")
    texts = ["great fun", "dull and boring", "an unknown word"]
    expected = steps.predict(run, texts)
    script = f"""
import json, sys, tensorflow as tf
serve = tf.saved_model.load({str(tmp_path / "export")!r}).signatures["serving_default"]
out = serve(text=tf.constant({texts!r}))
assert "nlptool" not in sys.modules
print(json.dumps([[l.decode() for l in out["label"].numpy()], out["probabilities"].numpy().tolist()]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    assert done.returncode == 0, done.stderr[-2000:]
    labels, probabilities = json.loads(done.stdout.strip().splitlines()[-1])
    assert labels == [label for label, _ in expected]
    np.testing.assert_allclose(np.max(probabilities, axis=1), [p for _, p in expected], atol=1e-5)
    with pytest.raises(steps.export_lib.ExportError, match="already exists"):
        steps.export(run, tmp_path / "export")
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            str(tmp_path / "export"),
            "--all",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    ).stdout
    for needle in (
        "signature_def['serving_default']",
        "inputs['text']",
        "outputs['label']",
        "outputs['probabilities']",
        "signature_def['class_names']",
    ):
        assert needle in shown, needle


@pytest.fixture
def csv_files(tmp_path):
    rows = [(t, "pos") for t in POSITIVE * 3] + [(t, "neg") for t in NEGATIVE * 3]
    train = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(train, index=False)
    return train


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
                "--csv",
                str(csv_files),
                "--test-csv",
                str(csv_files),
                *common,
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    assert "test: 36 examples, accuracy" in capsys.readouterr().out
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert main(["evaluate", str(run)]) == 0
    assert "examples, accuracy" in capsys.readouterr().out
    assert main(["export", str(run), str(out)]) == 0
    assert main(["export", str(run), str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["export", str(run), str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), "great fun"]) == 0
    label, probability, text = capsys.readouterr().out.strip().split("\t")
    assert label in {"pos", "neg"} and 0.5 <= float(probability) <= 1.0 and text == "great fun"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--text-column", "text", "--label-column", "sentiment"], "no column 'text'"),
        (["--text-column", "review", "--label-column", "sentiment", "--set", "model.unitz=3"], "model.unitz"),
    ],
)
def test_cli_bad_input_leaves_no_run_directory(csv_files, tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "sentiment", "--csv", str(csv_files), *args, "--run-dir", str(run)]) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()
