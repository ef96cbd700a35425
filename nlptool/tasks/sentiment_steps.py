"""The sentiment flow, step by step: data -> tokeniser -> model -> fit ->
evaluate -> export. `recipes/sentiment.py` and `nlptool train sentiment`
both run these functions, so the two never drift apart.
"""

import dataclasses
import json
import logging
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import export as export_lib
from nlptool import training
from nlptool.data import datasets
from nlptool.data.csv import LabeledData, LabelMap, load_labeled_data, stratified_split
from nlptool.data.pipeline import make_dataset
from nlptool.files import write_json
from nlptool.tasks.sentiment import SentimentConfig, SentimentServing, build_model, class_weights
from nlptool.tokenizers.files import TOKENIZER_FILE, load_tokenizer, save_tokenizer
from nlptool.training import CONFIG_FILE, RunError

# which split of a registered dataset is its test set (SST-2's GLUE test set has no labels)
TEST_SPLITS = {"imdb": "test", "sst2": "dev"}
LABELS_FILE = "labels.json"
# the model fields that shape the weights, which a run fine-tuned from another takes from it
ARCHITECTURE_FIELDS = ("embedding_dim", "units", "layers", "bidirectional", "pooling")
logger = logging.getLogger("nlptool.sentiment")


# === Data ===


def dataset_data(name, seed, validation_fraction, data_dir=None, max_train_examples=None):
    """Train / validation / test frames of a registered dataset: validation
    is a stratified share of the training split (SST-2: of its whole
    sentences, see `datasets.sst2_hold_out`); labels become class names."""
    if name not in TEST_SPLITS:
        raise RunError(f"Dataset {name!r} is not a sentiment dataset; choose one of {sorted(TEST_SPLITS)}.")
    dataset = datasets.get(name)
    names = dataset.label_names

    def frame(split):
        data = datasets.load(name, split, data_dir=data_dir)
        return data.assign(label=data["label"].map(names))

    if dataset.hold_out is not None:
        train, validation = dataset.hold_out(frame("train"), validation_fraction, seed)
    else:
        train, validation = stratified_split(frame("train"), validation_fraction, seed, source=f"{name}/train")
    if max_train_examples is not None:
        train = train.iloc[:max_train_examples]
    test = frame(TEST_SPLITS[name])
    return LabeledData(train, validation, test, LabelMap.from_labels(train["label"]))


def csv_data(
    train_csv,
    text_column,
    label_column,
    seed,
    validation_fraction,
    validation_csv=None,
    test_csv=None,
    max_train_examples=None,
):
    data = load_labeled_data(
        train_csv,
        text_column,
        label_column,
        validation_csv=validation_csv,
        test_csv=test_csv,
        validation_fraction=validation_fraction,
        seed=seed,
    )
    if max_train_examples is not None:
        data = LabeledData(data.train.iloc[:max_train_examples], data.validation, data.test, data.label_map)
    return data


# === Tokeniser ===


def make_tokenizer(config):
    """An untrained tokeniser as `config.tokenizer` describes."""
    from nlptool import tokenizers

    return tokenizers.create(config.tokenizer.kind, config.tokenizer.vocab_size)


# === Run directory ===


def save_run_files(run_dir, config, tokenizer, label_map):
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save_yaml(config, run_dir / CONFIG_FILE)
    save_tokenizer(tokenizer, run_dir)
    write_json(run_dir / LABELS_FILE, label_map.to_config())


def load_run(run_dir):
    """(config, tokenizer, label_map, model with the best weights) of a run."""
    run_dir = Path(run_dir)
    training.require_files(run_dir, [CONFIG_FILE, TOKENIZER_FILE, LABELS_FILE, training.CHECKPOINT], "sentiment")
    config = config_lib.resolve(SentimentConfig, [run_dir / CONFIG_FILE])
    tokenizer = load_tokenizer(run_dir)
    label_map = LabelMap.from_config(json.loads((run_dir / LABELS_FILE).read_text("utf-8")))
    model = build_model(config, tokenizer.vocabulary_size(), len(label_map))
    model.load_weights(run_dir / training.CHECKPOINT)
    return config, tokenizer, label_map, model


# === Training ===


def _shaped_like(config, tokenizer_kind, vocab_size, **model_fields):
    """`config` with the tokeniser and model shape of the run or language
    model whose weights it starts from; its regularisation, text length and
    training settings stay, and the run's config.yaml records the result."""
    return dataclasses.replace(
        config,
        tokenizer=dataclasses.replace(config.tokenizer, kind=tokenizer_kind, vocab_size=vocab_size),
        model=dataclasses.replace(config.model, **model_fields),
    )


def train(config, data, run_dir, init_from=None, init_encoder_from=None, verbose=2):
    """Train a classifier into `run_dir`; returns (model, tokenizer).

    With `init_from` (an earlier run directory) the tokeniser, the model's
    shape (ARCHITECTURE_FIELDS) and all weights come from that run; when the
    label set differs, the classifier head is rebuilt and the rest kept.
    With `init_encoder_from` (a language-model run) the tokeniser, the
    embedding and the GRU layers start from the language model (see
    `transfer_encoder`). Running `train` again
    on an interrupted run directory resumes it.
    """
    if init_from is not None and init_encoder_from is not None:
        raise RunError("Pass either init_from (a sentiment run) or init_encoder_from (a language model), not both.")
    keras.utils.set_random_seed(config.training.seed)
    run_dir = Path(run_dir)
    label_map = data.label_map
    if init_from is not None:
        old_config, tokenizer, old_labels, old_model = load_run(init_from)
        config = _shaped_like(
            config,
            old_config.tokenizer.kind,
            old_config.tokenizer.vocab_size,
            **{name: getattr(old_config.model, name) for name in ARCHITECTURE_FIELDS},
        )
    elif init_encoder_from is not None:
        from nlptool.tasks import language_model_steps

        lm_config, tokenizer, language_model = language_model_steps.load_run(init_encoder_from)
        config = _shaped_like(
            config,
            lm_config.tokenizer.kind,
            tokenizer.vocabulary_size(),
            embedding_dim=lm_config.model.embedding_dim,
            units=lm_config.model.units,
        )
    else:
        tokenizer = make_tokenizer(config).train(data.train["text"])
    save_run_files(run_dir, config, tokenizer, label_map)

    model = build_model(config, tokenizer.vocabulary_size(), len(label_map))
    if init_from is not None:
        same_labels = old_labels.to_config() == label_map.to_config()
        for layer in model.layers:
            if layer.name == "classifier" and not same_labels:
                continue  # a new head for a new label set
            layer.set_weights(old_model.get_layer(layer.name).get_weights())
    elif init_encoder_from is not None:
        transferred = transfer_encoder(language_model, model)
        logger.info("started from %s: %s", init_encoder_from, ", ".join(transferred))
    momentum = config.training.ema_momentum
    averaging = {} if momentum is None else {"use_ema": True, "ema_momentum": momentum}
    model.compile(
        optimizer=keras.optimizers.Adam(config.training.learning_rate, **averaging),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    epoch = training.epoch_variable()
    max_length = config.tokenizer.max_length

    def pipeline(frame, shuffle):
        dataset = make_dataset(
            frame["text"].to_numpy(),
            label_map.encode(frame["label"]),
            tokenizer,
            config.training.batch_size,
            shuffle=shuffle,
            seed=config.training.seed,
            epoch=epoch if shuffle else None,
        )
        return dataset.map(lambda ids, y: (ids[:, :max_length], y))

    weights = (
        class_weights(label_map.encode(data.train["label"]), len(label_map)) if config.training.class_weights else None
    )
    model.fit(
        pipeline(data.train, shuffle=True),
        validation_data=pipeline(data.validation, shuffle=False),
        epochs=config.training.epochs,
        class_weight=weights,
        callbacks=training.callbacks(run_dir, epoch, patience=config.training.early_stopping_patience),
        shuffle=False,  # the pipeline shuffles, by (seed, epoch)
        verbose=verbose,
    )
    return model, tokenizer


# the language model's validation only ranks its epochs: this many words measure the
# perplexity closely enough and cost seconds, where all of IMDB's 2,500 reviews cost a minute
PRETRAIN_VALIDATION_WORDS = 200_000


def pretrain_language_model(lm_config, data, run_dir, max_words=None, also=(), data_dir=None, verbose=2):
    """Train a language model (`lm_config`, a LanguageModelConfig) into
    `run_dir` on the classifier's training texts, validated on its
    validation texts (their first PRETRAIN_VALIDATION_WORDS words); then
    `train(..., init_encoder_from=run_dir)` starts from it. Returns
    `run_dir`.

    `also` names registered datasets whose training splits join the
    classifier's texts (another site's film reviews, say);
    the texts are then shuffled together with the language model's seed.
    The language model reads the first `max_words` words of the result (all
    with None). No labels and no test split are read.
    """
    from nlptool.tasks import language_model_steps

    validation = data.validation["text"].tolist()
    validation = language_model_steps.first_words(validation, PRETRAIN_VALIDATION_WORDS) or validation[:1]
    texts = data.train["text"].tolist()
    if also:
        for name in also:
            texts += datasets.load(name, "train", data_dir=data_dir)["text"].tolist()
        np.random.default_rng(lm_config.training.seed).shuffle(texts)
    texts = language_model_steps.first_words(texts, max_words)
    corpus = language_model_steps.Corpus(texts, validation, None)
    language_model_steps.train(lm_config, corpus, run_dir, verbose=verbose)
    return Path(run_dir)


def transfer_encoder(language_model, model):
    """Copy a language model's embedding and GRU weights into the
    classifier `model` (built with the language model's embedding size and
    units); returns the names of the layers that received weights.

    The embedding always transfers. GRU layer i takes the language model's
    layer i where the shapes agree: every layer of a unidirectional stack
    (up to the language model's depth); in a bidirectional stack, the
    forward direction of the first layer (the backward direction reads the
    text the other way round, and deeper layers take both directions as
    input, so neither matches a left-to-right language model).
    """
    model.get_layer("embedding").set_weights(language_model.embedding.get_weights())
    transferred = ["embedding"]
    for index, source in enumerate(language_model.grus):
        try:
            layer = model.get_layer(f"bidirectional_{index}")
            target = layer.forward_layer
        except ValueError:
            try:
                target = model.get_layer(f"gru_{index}")
            except ValueError:
                break  # the classifier has fewer layers
        if [w.shape for w in target.weights] != [w.shape for w in source.weights]:
            break
        target.set_weights(source.get_weights())
        transferred.append(target.path)
    return transferred


# === Evaluation ===


def evaluate(run_dir, frame, split_name="test"):
    """Accuracy, macro F1, the classification report and the confusion
    matrix on `frame`; written to RUN_DIR/metrics.json with two PNGs."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    run_dir = Path(run_dir)
    config, tokenizer, label_map, model = load_run(run_dir)
    unknown = sorted(set(map(str, frame["label"])) - set(label_map.names))
    if unknown:
        raise RunError(f"The evaluation data has labels the model was not trained on: {unknown}.")
    y_true = label_map.encode(frame["label"])
    probabilities = predict_probabilities(model, tokenizer, frame["text"].tolist(), config.tokenizer.max_length)
    y_pred = probabilities.argmax(axis=1)
    names = label_map.names
    labels = list(range(len(names)))
    metrics = {
        "split": split_name,
        "examples": int(len(frame)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels)),
        "classification_report": classification_report(
            y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=0
        ),
        "confusion_matrix": {"labels": names, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    }
    write_json(run_dir / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], run_dir / "confusion_matrix.png")
    if (run_dir / "history.csv").is_file():
        plot_history(pd.read_csv(run_dir / "history.csv"), run_dir / "training_curves.png")
    return metrics


def predict_probabilities(model, tokenizer, texts, max_length, batch_size=256):
    """Class probabilities (len(texts), classes), computed in a graph traced once."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def probabilities(batch):
        return model(tokenizer(batch)[:, :max_length], training=False)

    out = [probabilities(tf.constant(texts[i : i + batch_size])).numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), "float32")


def plot_confusion_matrix(confusion, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axes = plt.subplots(figsize=(4 + 0.4 * len(confusion["labels"]),) * 2)
    ConfusionMatrixDisplay(np.array(confusion["matrix"]), display_labels=confusion["labels"]).plot(
        ax=axes, colorbar=False
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_history(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = history["epoch"] + 1
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + metric in history:
                axes.plot(epochs, history[prefix + metric], marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_title(metric)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# === Export and prediction ===


def export(run_dir, out_dir, overwrite=False):
    """The string-in SavedModel of a run (see SentimentServing)."""
    config, tokenizer, label_map, model = load_run(run_dir)
    module = SentimentServing(_TruncatingTokenizer(tokenizer, config.tokenizer.max_length), model, label_map.names)
    return export_lib.save(
        module,
        out_dir,
        signatures={"serving_default": module.serve, "class_names": module.class_names.get_concrete_function()},
        overwrite=overwrite,
    )


class _TruncatingTokenizer(tf.Module):
    """The run's tokeniser followed by the run's truncation, for export."""

    def __init__(self, tokenizer, max_length):
        super().__init__()
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, text):
        return self.tokenizer(text)[:, : self.max_length]


def predict(path, texts):
    """[(label, probability)] for `texts`, from a run directory or an export."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        outputs = tf.saved_model.load(str(path)).signatures["serving_default"](text=tf.constant(texts))
        labels = [label.decode("utf-8") for label in outputs["label"].numpy()]
        return list(zip(labels, outputs["probabilities"].numpy().max(axis=1).tolist()))
    config, tokenizer, label_map, model = load_run(path)
    probabilities = predict_probabilities(model, tokenizer, list(texts), config.tokenizer.max_length)
    return list(zip(label_map.decode(probabilities.argmax(axis=1)), probabilities.max(axis=1).tolist()))
