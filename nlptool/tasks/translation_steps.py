"""The translation flow, step by step: sentence pairs -> tokenisers -> id
batches -> model -> fit -> evaluate (sacreBLEU, chrF, perplexity) ->
translate -> export. `recipes/translation.py` and `nlptool train translation`
both run these functions.
"""

import dataclasses
import math
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from nlptool import config as config_lib
from nlptool import export as export_lib
from nlptool import training
from nlptool.data import datasets
from nlptool.data.csv import DataError, read_parallel_csv
from nlptool.data.pipeline import length_boundaries
from nlptool.files import write_atomically, write_json
from nlptool.tasks.translation import TranslationConfig, TranslationServing, build_model
from nlptool.tokenizers import END_ID, START_ID
from nlptool.tokenizers.files import load_tokenizer, save_tokenizer
from nlptool.training import CONFIG_FILE, RunError

SOURCE_TOKENIZER, TARGET_TOKENIZER = "source_tokenizer", "target_tokenizer"  # folders in the run directory
TOKENIZE_BATCH = 4096
DECODE_BATCH = 50  # sentences per call when translating a test set


@dataclasses.dataclass
class ParallelCorpus:
    """Sentence pairs: each split a DataFrame with the columns source and target."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None


# === Data ===


def dataset_corpus(name, source_lang, target_lang, data_dir=None, max_train_pairs=None):
    """The train, validation and test pairs of a registered translation dataset, for one direction."""
    dataset = datasets.get(name)
    if dataset.task != "translation":
        names = sorted(n for n, d in datasets.REGISTRY.items() if d.task == "translation")
        raise RunError(f"Dataset {name!r} is not a translation dataset; choose one of {names}.")
    for role, lang in (("source", source_lang), ("target", target_lang)):
        if lang not in dataset.columns:
            raise RunError(f"{name} has no language {lang!r} (the {role} language); it has {list(dataset.columns)}.")
    if source_lang == target_lang:
        raise RunError(f"The source and target languages are both {source_lang!r}.")

    def pairs(split):
        frame = datasets.load(name, split, data_dir=data_dir)
        return pd.DataFrame({"source": frame[source_lang], "target": frame[target_lang]})

    train_split, validation_split, test_split = dataset.splits
    train = pairs(train_split)
    if max_train_pairs:
        train = train.iloc[:max_train_pairs]
    return ParallelCorpus(train, pairs(validation_split), pairs(test_split))


def csv_corpus(train_csv, source_column, target_column, validation_csv=None, test_csv=None, seed=1234, fraction=0.05):
    """Pairs from the user's CSV files; without a validation CSV, a random
    `fraction` of the training pairs (fixed by `seed`) is held out."""

    def read(path):
        try:
            return read_parallel_csv(path, source_column, target_column)
        except DataError as error:
            raise RunError(str(error)) from None

    train = read(train_csv)
    if validation_csv:
        validation = read(validation_csv)
    else:
        held_out = max(1, round(len(train) * fraction))
        if len(train) - held_out < 1:
            raise RunError(f"{train_csv} has too few pairs to hold some out for validation; pass --validation-csv.")
        order = np.random.default_rng(seed).permutation(len(train))
        validation = train.iloc[np.sort(order[:held_out])].reset_index(drop=True)
        train = train.iloc[np.sort(order[held_out:])].reset_index(drop=True)
    return ParallelCorpus(train, validation, read(test_csv) if test_csv else None)


# === Tokenisers and batches ===


def make_tokenizers(config, corpus):
    """(source, target) tokenisers learnt from the training pairs; one model
    for both sides when `tokenizer.shared`."""
    from nlptool import tokenizers

    t = config.tokenizer
    options = {"lowercase": t.lowercase, "split_punctuation": True} if t.kind == "word" else {}
    if t.kind == "sentencepiece":
        options = {"character_coverage": 1.0, "seed": config.training.seed}
    sources, targets = corpus.train["source"].tolist(), corpus.train["target"].tolist()
    if t.shared:
        shared = tokenizers.create(t.kind, t.vocab_size, **options).train(sources + targets)
        return shared, shared
    source = tokenizers.create(t.kind, t.vocab_size, **options).train(sources)
    target = tokenizers.create(t.kind, t.vocab_size, **options).train(targets)
    return source, target


def encode(tokenizer, texts):
    """The texts as a tf.RaggedTensor of ids (no start or end tokens)."""
    parts = [
        tokenizer.tokenize(tf.constant(list(texts[start : start + TOKENIZE_BATCH]), tf.string))
        for start in range(0, len(texts), TOKENIZE_BATCH)
    ]
    return tf.concat(parts, axis=0) if parts else tf.ragged.constant([], dtype=tf.int32, ragged_rank=1)


def encode_pairs(source_tokenizer, target_tokenizer, frame, max_length=None):
    """(source ids, target ids) of the pairs in `frame`, as tf.RaggedTensors
    without start or end tokens. Pairs where the source plus </s> or <s>
    plus the target is longer than `max_length` tokens are left out."""
    source = encode(source_tokenizer, frame["source"].tolist())
    target = encode(target_tokenizer, frame["target"].tolist())
    if max_length:
        keep = tf.logical_and(source.row_lengths() < max_length, target.row_lengths() < max_length)
        source, target = tf.ragged.boolean_mask(source, keep), tf.ragged.boolean_mask(target, keep)
    if int(source.nrows()) == 0:
        raise RunError(
            f"No sentence pair of {len(frame)} fits in {max_length} tokens a side (with </s> or <s>); "
            "raise training.max_length."
        )
    return source, target


def pair_dataset(
    source_tokenizer, target_tokenizer, frame, batch_size, max_length=None, shuffle=False, seed=0, epoch=None
):
    """Batches ((source, target_input), target_output) of the pairs in `frame`
    (see `encode_pairs` and `batch_pairs`)."""
    pairs = encode_pairs(source_tokenizer, target_tokenizer, frame, max_length)
    return batch_pairs(*pairs, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)


def batch_pairs(source, target, batch_size, shuffle=False, seed=0, epoch=None):
    """Batches ((source, target_input), target_output) of encoded pairs.

    source is the source ids then </s>; target_input is <s> then the target
    ids, target_output the target ids then </s> (teacher forcing); each is
    right-padded with 0. Pairs of similar length share a batch (bucketing at
    the length quantiles). With `shuffle`, each epoch's order is a function
    of `seed` and the `epoch` variable (see nlptool.training.EpochCounter),
    so resumed training sees the same batches.
    """
    count = int(source.nrows())
    lengths = np.maximum(source.row_lengths().numpy(), target.row_lengths().numpy()) + 1
    boundaries = length_boundaries(lengths, buckets=min(8, max(1, count // batch_size)))

    if shuffle:

        def one_epoch(_):
            epoch_value = tf.constant(0, tf.int64) if epoch is None else tf.cast(epoch.read_value(), tf.int64)
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch_value])
            )
            return tf.data.Dataset.from_tensor_slices(order)

        indices = tf.data.Dataset.range(1).flat_map(one_epoch)
    else:
        indices = tf.data.Dataset.range(count)

    def pair(index):
        source_ids, target_ids = source[index], target[index]
        end, start = tf.constant([END_ID]), tf.constant([START_ID])
        return tf.concat([source_ids, end], 0), tf.concat([start, target_ids], 0), tf.concat([target_ids, end], 0)

    dataset = indices.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda s, t_in, t_out: tf.maximum(tf.shape(s)[0], tf.shape(t_in)[0]),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=([None], [None], [None]),
    )
    return dataset.map(lambda s, t_in, t_out: ((s, t_in), t_out)).prefetch(tf.data.AUTOTUNE)


# === Run directory ===


def load_config(run_dir):
    """The resolved config of a translation run."""
    training.require_files(run_dir, [CONFIG_FILE], "translation")
    return config_lib.resolve(TranslationConfig, [Path(run_dir) / CONFIG_FILE])


def load_run(run_dir):
    """(config, source tokenizer, target tokenizer, model with the best weights) of a run."""
    run_dir = Path(run_dir)
    training.require_files(
        run_dir,
        [CONFIG_FILE, f"{SOURCE_TOKENIZER}/tokenizer.json", f"{TARGET_TOKENIZER}/tokenizer.json", training.CHECKPOINT],
        "translation",
    )
    config = load_config(run_dir)
    source_tokenizer = load_tokenizer(run_dir / SOURCE_TOKENIZER)
    target_tokenizer = load_tokenizer(run_dir / TARGET_TOKENIZER)
    model = build_model(config, source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size())
    model.load_weights(run_dir / training.CHECKPOINT)
    return config, source_tokenizer, target_tokenizer, model


# === Training ===


def train(config, corpus, run_dir, verbose=2):
    """Train a translation model into `run_dir`; returns (model, source
    tokenizer, target tokenizer). Running it again on an interrupted run
    directory resumes it."""
    keras.utils.set_random_seed(config.training.seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    source_tokenizer, target_tokenizer = make_tokenizers(config, corpus)
    config_lib.save_yaml(config, run_dir / CONFIG_FILE)
    save_tokenizer(source_tokenizer, run_dir / SOURCE_TOKENIZER)
    save_tokenizer(target_tokenizer, run_dir / TARGET_TOKENIZER)

    t = config.training
    epoch = training.epoch_variable()
    tokenizers = (source_tokenizer, target_tokenizer)
    train_source, train_target = encode_pairs(*tokenizers, corpus.train, t.max_length)
    train_data = batch_pairs(train_source, train_target, t.batch_size, shuffle=True, seed=t.seed, epoch=epoch)
    validation_data = pair_dataset(*tokenizers, corpus.validation, t.batch_size)
    model = build_model(config, source_tokenizer.vocabulary_size(), target_tokenizer.vocabulary_size())
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate, global_clipnorm=t.clip_norm), jit_compile=False)
    callbacks = training.callbacks(
        run_dir, epoch, monitor="val_perplexity", mode="min", patience=t.early_stopping_patience
    )
    if t.max_minutes is not None:
        callbacks.append(training.TimeBudget(t.max_minutes))
    started = time.monotonic()
    model.fit(train_data, validation_data=validation_data, epochs=t.epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.monotonic() - started
    target_tokens = int(tf.reduce_sum(train_target.row_lengths())) + int(train_target.nrows())  # each with </s>
    write_json(
        run_dir / "training.json",
        {"seconds": seconds, "epochs": training.epochs_run(run_dir), "target_tokens_per_epoch": target_tokens},
    )
    return model, source_tokenizer, target_tokenizer


# === Translation ===


class Translator:
    """Translations from a run directory or an exported SavedModel, through
    the same signatures (see `TranslationServing`)."""

    def __init__(self, path, run=None):
        """`path`: a run directory or an export; `run`: the run's `load_run`
        result when the caller has it already (then `path` is not read)."""
        path = Path(path)
        if run is None and (path / "saved_model.pb").is_file():
            self._module = tf.saved_model.load(str(path))
            self._signatures = self._module.signatures
            self.defaults = {k: v.numpy().item() for k, v in self._signatures["decoding_defaults"]().items()}
        else:
            config, source_tokenizer, target_tokenizer, model = run or load_run(path)
            self._module = TranslationServing(source_tokenizer, target_tokenizer, model, config.decoding)
            self._signatures = {
                name: getattr(self._module, name) for name in ("beam_search", "greedy", "attention", "serve")
            }
            self.defaults = dataclasses.asdict(config.decoding)

    def translate(self, sources, beam_width=None, n_best=1, length_penalty=None, greedy=False):
        """A list per source sentence of its `n_best` (text, score) pairs,
        best first: beam search (the run's width and length penalty unless
        given), or greedy decoding with `greedy=True` (one pair, scored by
        its log-probability)."""
        beam_width = self.defaults["beam_width"] if beam_width is None else beam_width
        if beam_width < 1 or not 1 <= n_best <= beam_width:
            raise RunError(
                f"Need a beam width of at least 1 and 1 <= n_best <= beam width; "
                f"got beam width {beam_width} and n_best {n_best}."
            )
        if greedy and n_best != 1:
            raise RunError("Greedy decoding gives one translation per sentence; ask for n_best 1 or a beam search.")
        results = []
        for start in range(0, len(sources), DECODE_BATCH):
            batch = tf.constant(list(sources[start : start + DECODE_BATCH]), tf.string)
            if greedy:
                outputs = self._signatures["greedy"](source=batch)
                texts, scores = outputs["text"].numpy()[:, None], outputs["score"].numpy()[:, None]
            else:
                outputs = self._signatures["beam_search"](
                    source=batch,
                    beam_width=tf.constant(beam_width, tf.int32),
                    n_best=tf.constant(n_best, tf.int32),
                    length_penalty=tf.constant(
                        self.defaults["length_penalty"] if length_penalty is None else length_penalty, tf.float32
                    ),
                )
                texts, scores = outputs["text"].numpy(), outputs["score"].numpy()
            for row_texts, row_scores in zip(texts, scores):
                results.append([(t.decode("utf-8"), float(s)) for t, s in zip(row_texts, row_scores)])
        return results

    def attention(self, source, target):
        """(weights (target pieces, source pieces), source pieces, target pieces)
        of `target` read as the translation of `source`."""
        outputs = self._signatures["attention"](source=tf.constant([source]), target=tf.constant([target]))
        source_pieces = [p.decode("utf-8") for p in outputs["source_pieces"].numpy()[0]]
        target_pieces = [p.decode("utf-8") for p in outputs["target_pieces"].numpy()[0]]
        weights = outputs["weights"].numpy()[0]
        return weights[: len(target_pieces), : len(source_pieces)], source_pieces, target_pieces


def translate(path, sources, beam_width=None, n_best=1, greedy=False):
    """`Translator(path).translate(...)`: n-best (text, score) lists per sentence."""
    return Translator(path).translate(sources, beam_width=beam_width, n_best=n_best, greedy=greedy)


def plot_attention(path, source, out_png, target=None):
    """Draw the attention of a translation of `source` as a heat map (PNG)
    at `out_png`: rows are target pieces, columns source pieces. Without
    `target`, the model's own beam-search translation is drawn. Returns the
    target text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    translator = path if isinstance(path, Translator) else Translator(path)
    if target is None:
        target = translator.translate([source])[0][0][0]
    weights, source_pieces, target_pieces = translator.attention(source, target)
    figure, axes = plt.subplots(figsize=(1.5 + 0.45 * len(source_pieces), 1.2 + 0.38 * len(target_pieces)))
    image = axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source_pieces)), [p or "\u2581" for p in source_pieces], rotation=60, ha="right")
    axes.set_yticks(range(len(target_pieces)), [p or "\u2581" for p in target_pieces])
    axes.set_xlabel("source")
    axes.set_ylabel("translation")
    figure.colorbar(image, ax=axes, fraction=0.04)
    figure.tight_layout()
    try:
        write_atomically(out_png, lambda stream: figure.savefig(stream, format="png", dpi=120), binary=True)
    finally:
        plt.close(figure)
    return target


# === Evaluation ===


def evaluate(run_dir, pairs, split_name="test", beam_width=None):
    """sacreBLEU BLEU and chrF of the beam-search and the greedy translations
    of `pairs` (source, target) against the raw references, and the
    per-token perplexity of the references; written to RUN_DIR/metrics.json,
    with every translation in RUN_DIR/translations.tsv."""
    import sacrebleu

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config, source_tokenizer, target_tokenizer, model = run
    references = pairs["target"].tolist()
    sources = pairs["source"].tolist()

    data = pair_dataset(source_tokenizer, target_tokenizer, pairs, config.training.batch_size)
    model.compile(jit_compile=False)
    scores = model.evaluate(data, return_dict=True, verbose=0)

    translator = Translator(run_dir, run=run)
    beam_width = beam_width or config.decoding.beam_width
    metrics = {"split": split_name, "pairs": len(pairs), "perplexity": math.exp(scores["nll"])}
    hypotheses = {}
    for name, width in (("beam", beam_width), ("greedy", 1)):
        started = time.monotonic()
        translations = translator.translate(sources, beam_width=width, greedy=name == "greedy")
        hypotheses[name] = [best[0][0] for best in translations]
        bleu_metric = sacrebleu.BLEU()
        bleu = bleu_metric.corpus_score(hypotheses[name], [references])
        chrf = sacrebleu.corpus_chrf(hypotheses[name], [references])
        metrics[name] = {
            "bleu": bleu.score,
            "chrf": chrf.score,
            "beam_width": width,
            "seconds": time.monotonic() - started,
            "bleu_signature": str(bleu_metric.get_signature()),
        }
    metrics["bleu"], metrics["chrf"] = metrics["beam"]["bleu"], metrics["beam"]["chrf"]
    metrics["length_penalty"] = config.decoding.length_penalty

    def write_rows(stream):
        stream.write("source\treference\tbeam\tgreedy\n")
        for row in zip(sources, references, hypotheses["beam"], hypotheses["greedy"]):
            stream.write("\t".join(text.replace("\t", " ").replace("\n", " ") for text in row) + "\n")

    write_atomically(run_dir / "translations.tsv", write_rows)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


# === Export ===


def export(run_dir, out_dir, overwrite=False):
    """The string-in SavedModel of a run (see TranslationServing)."""
    config, source_tokenizer, target_tokenizer, model = load_run(run_dir)
    module = TranslationServing(source_tokenizer, target_tokenizer, model, config.decoding)
    return export_lib.save(
        module,
        out_dir,
        signatures={
            "serving_default": module.serve,
            "beam_search": module.beam_search,
            "greedy": module.greedy,
            "attention": module.attention,
            "decoding_defaults": module.decoding_defaults.get_concrete_function(),
        },
        overwrite=overwrite,
    )
