"""Sentiment analysis (text classification): texts with labels in, a GRU classifier out.

Data: a registered dataset (IMDB, SST-2) or the user's files with a text
and a label column. The tokeniser is learnt from the training texts (or
taken from the run or language model the classifier starts from); the
model is `nlptool.models.classifier`. Evaluation: accuracy, macro F1, the
classification report and the confusion matrix. The export's
`serving_default` takes `text` and returns `label` and `probabilities`.
"""

import dataclasses
import math
from typing import Literal

from nlptool.errors import RunError, UsageError
from nlptool.tasks import base

# which split of a registered dataset is its test set (SST-2's GLUE test set has no labels)
TEST_SPLITS = {"imdb": "test", "sst2": "dev"}
# the model fields that shape the weights, which a run fine-tuned from another takes from it
ARCHITECTURE_FIELDS = ("embedding_dim", "units", "layers", "bidirectional", "pooling")
PREDICT_BATCH = 256  # texts per call of the serving signature


@dataclasses.dataclass
class TokenizerConfig(base.TokenizerConfig):
    max_length: int = 256  # tokens kept per text (the first ones)

    ranges = {"max_length": base.AT_LEAST_ONE}


@dataclasses.dataclass
class ModelConfig(base.Section):
    embedding_dim: int = 128  # size of each token vector
    units: int = 128  # GRU state size per direction
    layers: int = 1  # stacked GRU layers
    bidirectional: bool = True  # read each text in both directions
    dropout: float = 0.3  # before the classifier, and on the GRU inputs
    embedding_dropout: float = 0.0  # share of tokens whose whole vector is zeroed in training (word dropout)
    pooling: Literal["last", "max_mean"] = "max_mean"  # what summarises the sequence

    ranges = {
        **dict.fromkeys(("embedding_dim", "units", "layers"), base.AT_LEAST_ONE),
        **dict.fromkeys(("dropout", "embedding_dropout"), base.RATE),
    }


@dataclasses.dataclass
class TrainingConfig(base.TrainingConfig):
    """A null `epochs`, `early_stopping_patience` or `validation_fraction` is chosen from the data before
    training (`SentimentTask.adapt`), printed, and recorded in the run's config.yaml; so they are never null
    where the base class's code reads them (hence the type: ignore of the narrower base types)."""

    # passes over the training data (early stopping may end sooner); null: about 3,000 optimizer steps,
    # from 3 to 30 epochs
    epochs: int | None = None  # type: ignore[assignment]
    learning_rate: float = 2e-3  # Adam
    # epochs without validation gain before stopping; null: 2 when an epoch is 500 steps or more, else 4
    early_stopping_patience: int | None = None  # type: ignore[assignment]
    # held out of the training data when no validation data are given; null: a tenth, but at least 30 rows
    # a class and 100 in all, at most a quarter and at most 5,000 rows
    validation_fraction: float | None = None  # type: ignore[assignment]
    class_weights: bool = False  # weight classes inversely to their frequency
    # adversarial training (Miyato et al., 2017): each step also trains on the word vectors moved by this
    # distance (in units of their standard deviation, over the whole text) in the direction that raises
    # the loss most; null: off
    adversarial_epsilon: float | None = None

    ranges = {"adversarial_epsilon": base.POSITIVE}


# what the settings a config leaves null aim at (`validation_share`, `training_length`)
TARGET_STEPS = 3_000
MAX_EPOCHS = 30
MIN_EPOCHS = 3
VALIDATION_ROWS_PER_CLASS = 30
MAX_VALIDATION_ROWS = 5_000


def validation_share(rows, classes):
    """The share of `rows` labelled rows of `classes` classes to hold out for validation when the config
    leaves it null: a tenth, but at least 30 rows a class (and 100 in all) so that accuracy on it can tell
    epochs apart, at most a quarter of the rows and at most 5,000 rows."""
    wanted = max(0.1 * rows, VALIDATION_ROWS_PER_CLASS * classes, 100)
    return round(min(wanted, 0.25 * rows, MAX_VALIDATION_ROWS) / rows, 4)


def training_length(train_rows, batch_size):
    """(epochs, early-stopping patience) for `train_rows` training rows when the config leaves them null:
    epochs enough for about 3,000 optimizer steps, from 3 (large data: one pass is thousands of steps) to
    30 (a few thousand rows make 50 steps a pass), early stopping ending a run sooner; a patience of 2
    epochs when an epoch is long (500 steps or more), else 4, since a small validation split's accuracy
    moves by chance from one epoch to the next."""
    steps = max(1, math.ceil(train_rows / batch_size))
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps)))
    return epochs, 2 if steps >= 500 else 4


@dataclasses.dataclass
class SentimentConfig:
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)


class SentimentTask(base.Task):
    name = "sentiment"
    description = "classify texts (sentiment, topic, any label set)"
    config_class = SentimentConfig
    columns = {"text": "the column holding the texts", "label": "the column holding the labels"}
    has_labels = True
    monitor = ("val_accuracy", "max")
    signatures = ("serving_default", "class_names")

    # --- command line ---

    def add_train_arguments(self, parser):
        start = parser.add_mutually_exclusive_group()
        start.add_argument(
            "--init-from",
            metavar="RUN_DIR|preset:NAME",
            help="fine-tune: start from a preset (`nlptool presets`) or a language-model run (its tokeniser, "
            "embedding and GRU layers), or from a sentiment run (its tokeniser, weights and model shape)",
        )
        start.add_argument(
            "--init-encoder-from",
            metavar="RUN_DIR",
            help="start from this language-model run's tokeniser, embedding and GRU layers",
        )

    def train_options(self, args):
        return {
            "init_from": base.start_spec(args.init_from),
            "init_encoder_from": base.start_spec(args.init_encoder_from),
        }

    # --- data ---

    def read_data(self, source, config):
        from nlptool.data import datasets, load_labeled_data
        from nlptool.data.splits import stratified_split

        seed, fraction = config.training.seed, config.training.validation_fraction
        if fraction is None:
            fraction = validation_share
        if source.dataset:
            name = self._check_dataset(source.dataset)
            dataset = datasets.get(name)
            train = self._dataset_frame(name, "train", source.data_dir)
            if callable(fraction):
                fraction = fraction(len(train), train["label"].nunique())
            if dataset.hold_out is not None:
                train, validation = dataset.hold_out(train, fraction, seed)
            else:
                train, validation = stratified_split(train, fraction, seed, source=f"{name}/train")
            test, test_name = self._dataset_frame(name, TEST_SPLITS[name], source.data_dir), TEST_SPLITS[name]
        else:
            text, label = self._columns(source)
            data = load_labeled_data(
                source.train_file,
                text,
                label,
                validation_path=source.validation_file,
                test_path=source.test_file,
                validation_fraction=fraction,
                seed=seed,
                delimiter=source.delimiter,
                names=self.column_flags(),
            )
            train, validation, test, test_name = data.train, data.validation, data.test, "test"
        if source.max_train_examples is not None:
            train = train.iloc[: source.max_train_examples]
        return base.Splits(train, validation, test, test_name)

    def read_split(self, source, config, split=None):
        from nlptool.data.labels import read_labeled

        if source.dataset:
            name = self._check_dataset(source.dataset)
            split = split or TEST_SPLITS[name]
            return self._dataset_frame(name, split, source.data_dir), split
        text, label = self._columns(source)
        frame = read_labeled(source.test_file, text, label, source.delimiter, min_classes=1, names=self.column_flags())
        return frame, source.test_file

    def from_frames(self, train, validation=None, test=None, columns=None, config=None):
        from nlptool.data import LabelMap
        from nlptool.data.splits import stratified_split

        config = config or SentimentConfig()
        frames = self.role_frames(train, validation, test, columns)
        # labels as a file's would be read: "5" and 5 are the same class, whichever way they came
        train, validation, test = (None if f is None else f.assign(label=_as_read(f["label"])) for f in frames)
        LabelMap.from_labels(train["label"])  # checks the labels are of one kind
        if validation is None:
            fraction = config.training.validation_fraction
            if fraction is None:
                fraction = validation_share(len(train), train["label"].nunique())
            train, validation = stratified_split(train, fraction, config.training.seed, source="the training data")
        return base.Splits(train, validation, test)

    def adapt(self, config, splits):
        t = config.training
        chosen = {}
        rows = len(splits.train) + len(splits.validation)
        if t.validation_fraction is None:
            chosen["validation_fraction"] = round(len(splits.validation) / rows, 4)
        epochs, patience = training_length(len(splits.train), t.batch_size)
        if t.epochs is None:
            chosen["epochs"] = epochs
        if t.early_stopping_patience is None:
            chosen["early_stopping_patience"] = patience
        if not chosen:
            return config, None
        shown = {
            "epochs": f"up to {chosen.get('epochs')} epochs",
            "early_stopping_patience": f"early stopping after {chosen.get('early_stopping_patience')} without gain",
            "validation_fraction": f"{len(splits.validation):,} rows "
            f"({100 * chosen.get('validation_fraction', 0):.1f} %) for validation",
        }
        note = (
            f"settings for {len(splits.train):,} training rows and {splits.train['label'].nunique()} classes: "
            + ", ".join(shown[key] for key in shown if key in chosen)
            + " (set "
            + ", ".join(f"training.{key}" for key in shown if key in chosen)
            + " to choose)"
        )
        return dataclasses.replace(config, training=dataclasses.replace(t, **chosen)), note

    def describe(self, splits):
        classes = sorted({str(label) for label in splits.train["label"]})
        return f"{super().describe(splits)}; classes {classes}"

    def _check_dataset(self, name):
        if name not in TEST_SPLITS:
            raise UsageError(f"Dataset {name!r} is not a sentiment dataset; choose one of {sorted(TEST_SPLITS)}.")
        return name

    def _dataset_frame(self, name, split, data_dir):
        from nlptool.data import datasets

        frame = datasets.load(name, split, data_dir=data_dir)
        return frame.assign(label=frame["label"].map(datasets.get(name).label_names))

    def _columns(self, source):
        return source.columns.get("text", "text"), source.columns.get("label", "label")

    # --- preprocessing and model ---

    def prepare(self, config, splits, init_from=None, init_encoder_from=None):
        from nlptool import presets, tokenizers
        from nlptool.data import LabelMap

        if init_from is not None and init_encoder_from is not None:
            raise UsageError(
                "Start from either a sentiment run (--init-from, init_from) or a language model "
                "(--init-encoder-from, init_encoder_from), not both."
            )
        label_map = LabelMap.from_labels(splits.train["label"])
        if init_from is not None and _task_of(init_from) == "language-model":
            init_from, init_encoder_from = None, init_from
        if init_from is not None:
            start = base.trained_run(init_from, self.name)
            old = start.config
            config = _shaped_like(
                config,
                old.tokenizer.kind,
                old.tokenizer.vocab_size,
                **{name: getattr(old.model, name) for name in ARCHITECTURE_FIELDS},
            )
            return config, base.Preprocessing({"text": start.preprocessing.tokenizers["text"]}, label_map, start)
        if init_encoder_from is not None:
            start = base.trained_run(init_encoder_from, "language-model")
            if start.config.model.direction != "forward":
                raise UsageError(
                    f"{init_encoder_from} is a backward language model; start from a forward one "
                    "(a preset brings its backward model with it)."
                )
            tokenizer = start.preprocessing.tokenizers["text"]
            config = _shaped_like(
                config,
                start.config.tokenizer.kind,
                tokenizer.vocabulary_size(),
                embedding_dim=start.config.model.embedding_dim,
                units=start.config.model.units,
            )
            backward = None
            if presets.is_preset(init_encoder_from) and presets.get(init_encoder_from).has_backward:
                backward = base.trained_run(presets.run_dir(init_encoder_from, "backward"), "language-model")
            return config, base.Preprocessing({"text": tokenizer}, label_map, start, start_backward=backward)
        tokenizer = tokenizers.create(config.tokenizer.kind, config.tokenizer.vocab_size)
        return config, base.Preprocessing({"text": tokenizer.train(splits.train["text"])}, label_map)

    def build_model(self, config, preprocessing):
        from nlptool.models import classifier

        vocabulary = preprocessing.tokenizers["text"].vocabulary_size()
        return classifier.build_model(config, vocabulary, len(preprocessing.labels))

    def initialize(self, model, preprocessing, init_from=None, init_encoder_from=None):
        import logging

        from nlptool.models import classifier

        start = preprocessing.start  # what `prepare` took from init_from or init_encoder_from
        if start is None:
            return
        if start.task.name == "language-model":
            backward = preprocessing.start_backward
            transferred = classifier.transfer_encoder(start.model, model, None if backward is None else backward.model)
            logging.getLogger("nlptool.sentiment").info(
                "started from %s: %s", init_from or init_encoder_from, ", ".join(transferred)
            )
            return
        same_labels = start.preprocessing.labels.to_config() == preprocessing.labels.to_config()
        for layer in model.layers:
            if layer.name == "classifier" and not same_labels:
                continue  # a new head for a new label set
            layer.set_weights(start.model.get_layer(layer.name).get_weights())

    def compile(self, model, config):
        from nlptool import training

        model.compile(
            optimizer=training.optimizer(config.training),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )

    def datasets(self, config, preprocessing, splits, epoch):
        from nlptool.data.pipeline import make_dataset
        from nlptool.models.classifier import class_weights

        tokenizer, labels, t = preprocessing.tokenizers["text"], preprocessing.labels, config.training
        max_length = config.tokenizer.max_length

        def pipeline(frame, shuffle):
            dataset = make_dataset(
                frame["text"].to_numpy(),
                labels.encode(frame["label"]),
                tokenizer,
                t.batch_size,
                shuffle=shuffle,
                seed=t.seed,
                epoch=epoch if shuffle else None,
                max_length=max_length,
            )
            return dataset

        weights = class_weights(labels.encode(splits.train["label"]), len(labels)) if t.class_weights else None
        return base.Batches(
            pipeline(splits.train, shuffle=True),
            pipeline(splits.validation, shuffle=False),
            info={"train_examples": len(splits.train)},
            fit_options={"class_weight": weights},
        )

    # --- evaluation, serving, prediction ---

    def evaluate(self, trained, frame, split):
        import pandas as pd
        from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

        from nlptool import plots
        from nlptool.models.classifier import predict_probabilities

        label_map = trained.preprocessing.labels
        if not label_map.is_int:  # a file's "1" is the string "1" when the run's labels are strings
            frame = frame.assign(label=[str(label) for label in frame["label"]])
        unknown = sorted(set(map(str, frame["label"])) - set(label_map.names))
        if unknown:
            raise RunError(f"The evaluation data has labels the model was not trained on: {unknown}.")
        y_true = label_map.encode(frame["label"])
        tokenizer = trained.preprocessing.tokenizers["text"]
        texts = frame["text"].tolist()
        probabilities = predict_probabilities(trained.model, tokenizer, texts, trained.config.tokenizer.max_length)
        y_pred = probabilities.argmax(axis=1)
        names = label_map.names
        labels = list(range(len(names)))
        metrics = {
            "split": split,
            "examples": int(len(frame)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=labels)),
            "classification_report": classification_report(
                y_true, y_pred, labels=labels, target_names=names, output_dict=True, zero_division=0
            ),
            "confusion_matrix": {"labels": names, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
        }
        plots.plot_confusion_matrix(metrics["confusion_matrix"], trained.path / "confusion_matrix.png")
        if (trained.path / "history.csv").is_file():
            plots.plot_history(pd.read_csv(trained.path / "history.csv"), trained.path / "training_curves.png")
        return metrics

    def summary(self, metrics):
        return (
            f"{metrics['split']}: {metrics['examples']:,} examples, accuracy {metrics['accuracy']:.4f}, "
            f"macro F1 {metrics['macro_f1']:.4f}"
        )

    def serving_module(self, trained):
        from nlptool.models.classifier import ClassifierServing

        module = ClassifierServing(
            trained.preprocessing.tokenizers["text"],
            trained.model,
            trained.preprocessing.labels.names,
            trained.config.tokenizer.max_length,
        )
        return module, {"serving_default": module.serve, "class_names": module.class_names.get_concrete_function()}

    def predict(self, signatures, texts):
        import tensorflow as tf

        names = [name.decode("utf-8") for name in signatures["class_names"]()["class_names"].numpy()]
        rows = []
        for start in range(0, len(texts), PREDICT_BATCH):
            outputs = signatures["serving_default"](text=tf.constant(texts[start : start + PREDICT_BATCH]))
            for label, probabilities in zip(outputs["label"].numpy(), outputs["probabilities"].numpy()):
                rows.append(
                    {
                        "label": label.decode("utf-8"),
                        "probability": float(probabilities.max()),
                        "probabilities": dict(zip(names, probabilities.tolist())),
                    }
                )
        return rows

    def format_prediction(self, text, row):
        return f"{row['label']}\t{row['probability']:.4f}\t{text}"


def _as_read(labels):
    from nlptool.data.labels import parse_labels

    values = list(labels)
    if all(isinstance(value, str) for value in values):
        return parse_labels(values)
    return values


def _task_of(path):
    """The task name of the run (or preset) at `path`."""
    from nlptool import runs

    return runs.task_of(path)[0].name


def _shaped_like(config, tokenizer_kind, vocab_size, **model_fields):
    """`config` with the tokeniser and model shape of the run or language
    model whose weights it starts from; its regularisation, text length and
    training settings stay, and the run's config.yaml records the result."""
    return dataclasses.replace(
        config,
        tokenizer=dataclasses.replace(config.tokenizer, kind=tokenizer_kind, vocab_size=vocab_size),
        model=dataclasses.replace(config.model, **model_fields),
    )


# the language model's validation only ranks its epochs: this many words measure the
# perplexity closely enough and cost seconds, where all of IMDB's 2,500 reviews cost a minute
PRETRAIN_VALIDATION_WORDS = 200_000


def pretrain_language_model(
    lm_config, splits, run_dir, max_words=None, also=(), data_dir=None, verbose=2, overwrite=False
):
    """Train a language model (`lm_config`, a LanguageModelConfig) into
    `run_dir` on a classifier's training texts (`splits`, sentiment
    Splits), validated on its validation texts (their first
    PRETRAIN_VALIDATION_WORDS words); `train(..., init_encoder_from=run_dir)`
    then starts from it. Returns the language model's Run.

    `also` names registered datasets whose training splits join the
    classifier's texts (another site's film reviews, say); the texts are
    then shuffled together with the language model's seed. The language
    model reads the first `max_words` words of the result (all with None).
    No labels and no test split are read. `overwrite` starts afresh in a
    `run_dir` that holds another (or a finished) run, as `runs.train` does.
    """
    import numpy as np

    from nlptool import runs
    from nlptool.data import datasets
    from nlptool.tasks.language_model import first_words

    validation = splits.validation["text"].tolist()
    validation = first_words(validation, PRETRAIN_VALIDATION_WORDS) or validation[:1]
    texts = splits.train["text"].tolist()
    if also:
        for name in also:
            texts += datasets.load(name, "train", data_dir=data_dir)["text"].tolist()
        np.random.default_rng(lm_config.training.seed).shuffle(texts)
    texts = first_words(texts, max_words)
    return runs.train(
        "language-model", lm_config, base.Splits(texts, validation, None), run_dir, overwrite=overwrite, verbose=verbose
    )
