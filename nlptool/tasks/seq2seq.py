"""What the tasks on the attention encoder-decoder share: `PairTask` (their
data, text pairs from a registered dataset or the user's files, and their
five signatures), decoding many inputs through the serving signatures,
evaluation against references, the references' perplexity and attention
plots. The signatures are those of the task's serving module, built in
process for a run or loaded from an export, so both decode the same way.
"""

from nlptool.errors import UsageError
from nlptool.progress import Progress
from nlptool.tasks import base

# the numbers of the shared encoder-decoder's model section (`ModelConfig` of translation and summarisation)
MODEL_RANGES = {
    **dict.fromkeys(
        ("embedding_dim", "encoder_units", "encoder_layers", "decoder_units", "attention_units"), base.AT_LEAST_ONE
    ),
    "dropout": base.RATE,
}


class PairTask(base.Task):
    """A task on text pairs (translation, summarisation): the two roles of
    `columns` (input first), read from a registered dataset of the task or
    from the user's files into data frames with one column per role."""

    kind = "text-pair"  # how messages name the task's datasets ("a translation dataset")
    signatures = ("serving_default", "beam_search", "greedy", "attention", "decoding_defaults")

    def read_data(self, source, config):
        from nlptool.data.splits import random_split

        if source.dataset:
            names = self.dataset_of(source.dataset, config).splits
            train, validation, test = (self.registered_pairs(source, config, split) for split in names)
            test_name = names[-1]
        else:
            train = self.file_pairs(source, source.train_file)
            if source.validation_file:
                validation = self.file_pairs(source, source.validation_file)
            else:
                t = config.training
                train, validation = random_split(train, t.validation_fraction, t.seed, source=source.train_file)
            test = self.file_pairs(source, source.test_file) if source.test_file else None
            test_name = "test"
        if source.max_train_examples:
            train = train.iloc[: source.max_train_examples]
        return base.Splits(train, validation, test, test_name)

    def read_split(self, source, config, split=None):
        if source.dataset:
            split = split or self.dataset_of(source.dataset, config).splits[-1]
            return self.registered_pairs(source, config, split), split
        return self.file_pairs(source, source.test_file), source.test_file

    def from_frames(self, train, validation=None, test=None, columns=None, config=None):
        from nlptool.data.splits import random_split

        config = config or self.config_class()
        train, validation, test = self.role_frames(train, validation, test, columns)
        if validation is None:
            t = config.training
            train, validation = random_split(train, t.validation_fraction, t.seed, source="the training data")
        return base.Splits(train, validation, test)

    def dataset_of(self, name, config):
        """The registered dataset `name`, checked to be one of this task's that `config` can read."""
        from nlptool.data import datasets

        dataset = datasets.get(name)
        if dataset.task != self.name:
            names = sorted(n for n, d in datasets.REGISTRY.items() if d.task == self.name)
            raise UsageError(f"Dataset {name!r} is not a {self.kind} dataset; choose one of {names}.")
        self.check_dataset(dataset, config)
        return dataset

    @staticmethod
    def signature_functions(module):
        """{signature: function} of a serving module with the encoder-decoder signatures:
        serve, beam_search, greedy, attention and decoding_defaults."""
        return {
            "serving_default": module.serve,
            "beam_search": module.beam_search,
            "greedy": module.greedy,
            "attention": module.attention,
            "decoding_defaults": module.decoding_defaults.get_concrete_function(),
        }

    def check_dataset(self, dataset, config):
        """Raise UsageError when `config` cannot read `dataset` (a language it lacks)."""

    def registered_pairs(self, source, config, split):
        """The pairs of `split` of the registered dataset of `source`, one column per role."""
        from nlptool.data import datasets

        return datasets.load(source.dataset, split, data_dir=source.data_dir)

    def file_pairs(self, source, path):
        """The pairs of the user's file `path`, one column per role."""
        from nlptool.data import read_parallel

        first, second = self.columns
        flags = self.column_flags()
        pairs = read_parallel(
            path,
            source.columns.get(first, first),
            source.columns.get(second, second),
            source.delimiter,
            names={"source": flags[first], "target": flags[second]},
        )
        return pairs.rename(columns={"source": first, "target": second})


def decode(
    signatures,
    sources,
    beam_width=None,
    n_best=1,
    greedy=False,
    batch=50,
    progress=False,
    input_name="source",
    output_name="text",
    rules=None,
    **options,
):
    """One row per source: {"text", "score", "n_best": [(text, score), ...]},
    best first. Beam search with the run's width and decoding options unless
    given (`options`: the other scalar inputs of the beam_search signature,
    such as length_penalty; None takes the run's value from
    decoding_defaults), or greedy decoding (one hypothesis, scored by its
    log-probability). `input_name` and `output_name` are the signatures'
    text input and output; `rules`, the task's decoding config section,
    checks the options given (UsageError naming the first outside its range)."""
    import tensorflow as tf

    defaults = signatures["decoding_defaults"]()
    values = {k: v.numpy().item() for k, v in defaults.items()}
    beam_width = values["beam_width"] if beam_width is None else beam_width
    if greedy and n_best != 1:
        raise UsageError("Greedy decoding gives one output per input; ask for n_best 1 or a beam search.")
    if not greedy and (beam_width not in base.BEAM_WIDTH or not 1 <= n_best <= beam_width):
        raise UsageError(
            f"Need a beam width {base.BEAM_WIDTH} and 1 <= n_best <= beam width; "
            f"got beam width {beam_width} and n_best {n_best}."
        )
    if rules is not None:
        try:
            rules.check(**options)
        except ValueError as error:
            raise UsageError(str(error)) from None
    scalars = {
        name: tf.constant(values[name] if value is None else value, defaults[name].dtype)
        for name, value in options.items()
    }
    bar = Progress(len(sources), "inputs decoded") if progress else None
    rows = []
    for start in range(0, len(sources), batch):
        inputs = {input_name: tf.constant(list(sources[start : start + batch]), tf.string)}
        if greedy:
            outputs = signatures["greedy"](**inputs)
            texts, scores = outputs[output_name].numpy()[:, None], outputs["score"].numpy()[:, None]
        else:
            outputs = signatures["beam_search"](
                **inputs,
                beam_width=tf.constant(beam_width, tf.int32),
                n_best=tf.constant(n_best, tf.int32),
                **scalars,
            )
            texts, scores = outputs[output_name].numpy(), outputs["score"].numpy()
        for row_texts, row_scores in zip(texts, scores):
            hypotheses = [(t.decode("utf-8"), float(s)) for t, s in zip(row_texts, row_scores)]
            rows.append({"text": hypotheses[0][0], "score": hypotheses[0][1], "n_best": hypotheses})
        if bar is not None:
            bar.update(len(rows))
    return rows


def attention(signatures, source, target):
    """(weights (target pieces, source pieces), source pieces, target pieces)
    of `target` read as the output for `source`."""
    import tensorflow as tf

    outputs = signatures["attention"](source=tf.constant([source]), target=tf.constant([target]))
    source_pieces = [p.decode("utf-8") for p in outputs["source_pieces"].numpy()[0]]
    target_pieces = [p.decode("utf-8") for p in outputs["target_pieces"].numpy()[0]]
    weights = outputs["weights"].numpy()[0]
    return weights[: len(target_pieces), : len(source_pieces)], source_pieces, target_pieces


def draw_attention(signatures, source, target, path, output_label="output"):
    """The attention of `target` as the output for `source`, drawn as a heat map (PNG) at `path`."""
    import logging

    from nlptool import plots

    weights, source_pieces, target_pieces = attention(signatures, source, target)
    plots.plot_attention(weights, source_pieces, target_pieces, path, target_label=output_label)
    logging.getLogger("nlptool").info("wrote %s", path)
    return path


def evaluate_pairs(task, trained, pairs, split, beam_width=None, output_file="outputs.tsv"):
    """sacreBLEU BLEU and chrF of the beam-search and the greedy outputs of
    `pairs` (source, target) against the raw references, and the per-token
    perplexity of the references; every output goes to RUN_DIR/`output_file`."""
    import math
    import time

    import sacrebleu

    from nlptool.data.pairs import pair_dataset
    from nlptool.files import write_atomically

    config, tokenizers = trained.config, trained.preprocessing.tokenizers
    references, sources = pairs["target"].tolist(), pairs["source"].tolist()
    data = pair_dataset(tokenizers["source"], tokenizers["target"], pairs, config.training.batch_size)
    nll = reference_nll(trained.model, data)
    _, signatures = task.serving_module(trained)
    beam_width = beam_width or config.decoding.beam_width
    metrics = {"split": split, "pairs": len(pairs), "perplexity": math.exp(nll)}
    hypotheses = {}
    for name, width in (("beam", beam_width), ("greedy", 1)):
        started = time.monotonic()
        rows = decode(
            signatures, sources, beam_width=width, greedy=name == "greedy", progress=True, length_penalty=None
        )
        hypotheses[name] = [row["text"] for row in rows]
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

    write_atomically(trained.path / output_file, write_rows)
    return metrics


def reference_nll(model, batches):
    """Mean negative log-likelihood per target token of the teacher-forced
    references in `batches` (summed in float64, as the training metric does)."""
    import tensorflow as tf

    from nlptool.models.losses import smoothed_nll

    @tf.function(reduce_retracing=True)
    def batch_nll(source, target_input, target_output):
        scores, _ = model((source, target_input), training=False)
        _, nll, count = smoothed_nll(scores, target_output)
        return nll, count

    total, count = 0.0, 0.0
    for (source, target_input), target_output in batches:
        nll, n = batch_nll(source, target_input, target_output)
        total, count = total + float(nll), count + float(n)
    return total / max(count, 1.0)
