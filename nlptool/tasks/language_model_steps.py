"""The language-model flow, step by step: corpus -> tokeniser -> token
streams -> model -> fit (truncated BPTT) -> evaluate -> generate -> export.
`recipes/language_model.py` and `nlptool train language-model` both run these
functions.
"""

import dataclasses
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import export as export_lib
from nlptool import training
from nlptool.data import datasets
from nlptool.data.csv import DataError
from nlptool.data.text import read_lines
from nlptool.files import write_json
from nlptool.tasks.language_model import (
    LanguageModelConfig,
    LanguageModelServing,
    build_model,
    stream_nll,
    window_dataset,
)
from nlptool.tokenizers import END_ID, PAD_ID
from nlptool.tokenizers.files import TOKENIZER_FILE, load_tokenizer, save_tokenizer
from nlptool.training import CONFIG_FILE, RunError

CHUNK_CHARACTERS = 10_000  # "text" unit corpora are tokenised in pieces of whole lines of about this size
TOKENIZE_BATCH = 2048


@dataclasses.dataclass
class Corpus:
    """The three splits of a corpus, each a list of lines (in order)."""

    train: list
    validation: list
    test: list | None


# === Data ===

LM_SPLITS = ("train", "valid", "test")


def dataset_corpus(name, data_dir=None, max_train_lines=None):
    if datasets.get(name).task != "language_modeling":
        lm = sorted(n for n, d in datasets.REGISTRY.items() if d.task == "language_modeling")
        raise RunError(f"Dataset {name!r} is not a language-modelling corpus; choose one of {lm}.")
    train, validation, test = (datasets.load(name, split, data_dir=data_dir)["text"].tolist() for split in LM_SPLITS)
    return Corpus(train[:max_train_lines] if max_train_lines else train, validation, test)


def first_words(lines, max_words):
    """The leading `lines` that hold at most `max_words` whitespace-separated
    words in all (every line with `max_words` None): a corpus cut to a
    training budget without breaking a line."""
    if max_words is None:
        return list(lines)
    kept, total = [], 0
    for line in lines:
        total += len(line.split())
        if total > max_words:
            break
        kept.append(line)
    return kept


def text_corpus(train_path, validation_path=None, test_path=None, column=None, validation_fraction=0.05):
    """A corpus from the user's text files (one line a row) or one CSV column.
    Without a validation file, the last `validation_fraction` of the training
    lines is held out (in order: no shuffling of a running text)."""

    def read(path):
        try:
            return read_lines(path, column)
        except DataError as error:
            raise RunError(str(error)) from None

    train = read(train_path)
    if validation_path:
        validation = read(validation_path)
    else:
        held_out = max(1, int(len(train) * validation_fraction))
        if len(train) - held_out < 1:
            raise RunError(f"{train_path} has too few lines to hold some out for validation; pass a validation file.")
        train, validation = train[:-held_out], train[-held_out:]
    return Corpus(train, validation, read(test_path) if test_path else None)


# === Tokeniser and streams ===


def make_tokenizer(config):
    from nlptool import tokenizers

    t = config.tokenizer
    options = {"lowercase": t.lowercase, "split_punctuation": t.split_punctuation} if t.kind == "word" else {}
    return tokenizers.create(t.kind, t.vocab_size, **options)


def training_texts(lines, unit):
    """What the tokeniser learns from: the lines, or the text in pieces."""
    return lines if unit == "line" else _pieces(lines)


def _pieces(lines):
    """The text (every line followed by its newline) in pieces of whole lines
    of about CHUNK_CHARACTERS, so that no piece boundary splits a word."""
    pieces, piece, size = [], [], 0
    for line in lines:
        piece.append(line + "\n")
        size += len(line) + 1
        if size >= CHUNK_CHARACTERS:
            pieces.append("".join(piece))
            piece, size = [], 0
    if piece:
        pieces.append("".join(piece))
    return pieces


def token_stream(tokenizer, lines, unit):
    """The corpus as one int32 id stream. "line": every line's tokens then
    </s>, with one </s> in front so that the first word is predicted too (the
    PTB convention: every word and every end of sentence counts). "text":
    the text's tokens, newlines included, after one </s>."""
    texts = lines if unit == "line" else _pieces(lines)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(batch):
        ids = tokenizer(batch)
        if unit == "line":
            ids = tf.concat([ids, tf.fill([tf.shape(ids)[0], 1], PAD_ID)], axis=1)
            # </s> right after each line's last token
            lengths = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1)
            ids = tf.tensor_scatter_nd_update(
                ids, tf.stack([tf.range(tf.shape(ids)[0]), lengths], axis=1), tf.fill(tf.shape(lengths), END_ID)
            )
        return tf.boolean_mask(ids, ids != PAD_ID)  # row by row, in order

    parts = [np.array([END_ID], np.int32)]
    for start in range(0, len(texts), TOKENIZE_BATCH):
        parts.append(encode(tf.constant(texts[start : start + TOKENIZE_BATCH])).numpy())
    return np.concatenate(parts)


def word_count(lines, unit):
    """Words of the corpus in the PTB convention (whitespace-split words plus
    one end of line per line); None for "text" corpora."""
    return sum(len(line.split()) + 1 for line in lines) if unit == "line" else None


# === Run directory ===


def load_run(run_dir):
    """(config, tokenizer, model with the best weights) of a run."""
    run_dir = Path(run_dir)
    training.require_files(run_dir, [CONFIG_FILE, TOKENIZER_FILE, training.CHECKPOINT], "language-model")
    config = config_lib.resolve(LanguageModelConfig, [run_dir / CONFIG_FILE])
    tokenizer = load_tokenizer(run_dir)
    model = build_model(config, tokenizer.vocabulary_size())
    model.load_weights(run_dir / training.CHECKPOINT)
    return config, tokenizer, model


# === Training ===


def learning_rate_schedule(config):
    """The rate of each epoch, `rate(epoch)`: constant for the first
    `lr_decay_start` epochs, then times `lr_decay` per epoch (and times
    `lr_backoff` after each epoch that ends worse, see `train`)."""
    t = config.training

    def rate(epoch):
        return t.learning_rate * t.lr_decay ** max(0, epoch - t.lr_decay_start + 1)

    return rate


def train(config, corpus, run_dir, verbose=2):
    """Train a language model into `run_dir`; returns (model, tokenizer).

    After an epoch whose validation perplexity is worse than the best so
    far, training goes on from the best weights at the rate times
    `training.lr_backoff` (see `training.ScheduleWithBackOff`). Running it
    again on an interrupted run directory resumes it."""
    keras.utils.set_random_seed(config.training.seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    unit = config.tokenizer.unit
    tokenizer = make_tokenizer(config).train(training_texts(corpus.train, unit))
    config_lib.save_yaml(config, run_dir / CONFIG_FILE)
    save_tokenizer(tokenizer, run_dir)

    t = config.training
    train_stream = token_stream(tokenizer, corpus.train, unit)
    validation_stream = token_stream(tokenizer, corpus.validation, unit)
    model = build_model(config, tokenizer.vocabulary_size())
    model.carry_states(t.batch_size)
    if t.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(t.learning_rate, global_clipnorm=t.clip_norm)
    else:
        optimizer = keras.optimizers.Adam(t.learning_rate, global_clipnorm=t.clip_norm)
    model.compile(optimizer=optimizer, jit_compile=False)
    callbacks = training.callbacks(
        run_dir,
        training.epoch_variable(),
        monitor="val_perplexity",
        mode="min",
        patience=t.early_stopping_patience,
        schedule=learning_rate_schedule(config),
        back_off=t.lr_backoff,
    )
    if t.max_minutes is not None:
        callbacks.append(training.TimeBudget(t.max_minutes))
    started = time.monotonic()
    model.fit(
        window_dataset(train_stream, t.batch_size, t.window),
        validation_data=window_dataset(validation_stream, t.batch_size, t.window),
        epochs=t.epochs,
        callbacks=callbacks,
        shuffle=False,  # a stream is read in order
        verbose=verbose,
    )
    seconds = time.monotonic() - started
    write_json(
        run_dir / "training.json",
        {"seconds": seconds, "train_tokens": int(len(train_stream)), "epochs": training.epochs_run(run_dir)},
    )
    return model, tokenizer


# === Evaluation ===


def evaluate(run_dir, lines, split_name="test"):
    """Perplexity per token (and per word, bits per character where they
    apply) of `lines`, carrying state through the whole text; written to
    RUN_DIR/metrics.json."""
    run_dir = Path(run_dir)
    config, tokenizer, model = load_run(run_dir)
    unit = config.tokenizer.unit
    stream = token_stream(tokenizer, lines, unit)
    started = time.monotonic()
    nll, tokens = stream_nll(model, stream)
    metrics = {
        "split": split_name,
        "tokens": int(tokens),
        "nll_per_token": nll / tokens,
        "perplexity": math.exp(nll / tokens),
        "seconds": time.monotonic() - started,
    }
    words = word_count(lines, unit)
    if words is not None and config.tokenizer.kind != "word":
        metrics["word_perplexity"] = math.exp(nll / words)  # comparable across tokenisers
    if config.tokenizer.kind in ("char", "byte"):
        name = "bits_per_character" if config.tokenizer.kind == "char" else "bits_per_byte"
        metrics[name] = nll / tokens / math.log(2)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


# === Generation, export ===


def export(run_dir, out_dir, overwrite=False):
    """The string-in SavedModel of a run (see LanguageModelServing)."""
    config, tokenizer, model = load_run(run_dir)
    module = LanguageModelServing(tokenizer, model, config.generation)
    return export_lib.save(
        module,
        out_dir,
        signatures={
            "serving_default": module.serve,
            "generate": module.generate,
            "beam_search": module.beam_search,
            "generation_defaults": module.generation_defaults.get_concrete_function(),
        },
        overwrite=overwrite,
    )


def generate(path, prompts, max_new_tokens=None, temperature=None, top_k=None, top_p=None, seed=0, beam_width=None):
    """Continuations of `prompts` (a list of str) from a run directory or an
    export; unset arguments take the run's generation defaults. With
    `beam_width`, a beam search instead of sampling."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        module = tf.saved_model.load(str(path))
        signatures = module.signatures
        defaults = {k: v.numpy().item() for k, v in signatures["generation_defaults"]().items()}
    else:
        config, tokenizer, model = load_run(path)
        module = LanguageModelServing(
            tokenizer, model, config.generation
        )  # kept alive: tf.function methods hold it weakly
        signatures = {"generate": module.generate, "beam_search": module.beam_search}
        defaults = dataclasses.asdict(config.generation)
    if max_new_tokens is None:
        max_new_tokens = defaults["max_new_tokens"]
    if beam_width is not None:
        if beam_width < 1:
            raise RunError(f"The beam width must be at least 1, got {beam_width}.")
        outputs = signatures["beam_search"](
            prompt=tf.constant(list(prompts)),
            max_new_tokens=tf.constant(max_new_tokens, tf.int32),
            beam_width=tf.constant(beam_width, tf.int32),
        )
        return [text.decode("utf-8") for text in outputs["text"].numpy()]
    outputs = signatures["generate"](
        prompt=tf.constant(list(prompts)),
        max_new_tokens=tf.constant(max_new_tokens, tf.int32),
        temperature=tf.constant(defaults["temperature"] if temperature is None else temperature, tf.float32),
        top_k=tf.constant(defaults["top_k"] if top_k is None else top_k, tf.int32),
        top_p=tf.constant(defaults["top_p"] if top_p is None else top_p, tf.float32),
        seed=tf.constant(seed, tf.int64),
    )
    return [text.decode("utf-8") for text in outputs["text"].numpy()]
