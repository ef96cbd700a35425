"""What the tasks on the attention encoder-decoder share: decoding many
inputs through the serving signatures, evaluation against references, and
attention plots. The signatures are those of `EncoderDecoderServing`, built
in process for a run or loaded from an export, so both decode the same way.
"""

from nlptool.errors import UsageError
from nlptool.progress import Progress


def decode(signatures, sources, beam_width=None, n_best=1, length_penalty=None, greedy=False, batch=50, progress=False):
    """One row per source: {"text", "score", "n_best": [(text, score), ...]},
    best first. Beam search with the run's width and length penalty unless
    given, or greedy decoding (one hypothesis, scored by its
    log-probability)."""
    import tensorflow as tf

    defaults = {k: v.numpy().item() for k, v in signatures["decoding_defaults"]().items()}
    beam_width = defaults["beam_width"] if beam_width is None else beam_width
    length_penalty = defaults["length_penalty"] if length_penalty is None else length_penalty
    if greedy and n_best != 1:
        raise UsageError("Greedy decoding gives one output per input; ask for n_best 1 or a beam search.")
    if not greedy and (beam_width < 1 or not 1 <= n_best <= beam_width):
        raise UsageError(
            f"Need a beam width of at least 1 and 1 <= n_best <= beam width; "
            f"got beam width {beam_width} and n_best {n_best}."
        )
    bar = Progress(len(sources), "inputs decoded") if progress else None
    rows = []
    for start in range(0, len(sources), batch):
        inputs = tf.constant(list(sources[start : start + batch]), tf.string)
        if greedy:
            outputs = signatures["greedy"](source=inputs)
            texts, scores = outputs["text"].numpy()[:, None], outputs["score"].numpy()[:, None]
        else:
            outputs = signatures["beam_search"](
                source=inputs,
                beam_width=tf.constant(beam_width, tf.int32),
                n_best=tf.constant(n_best, tf.int32),
                length_penalty=tf.constant(length_penalty, tf.float32),
            )
            texts, scores = outputs["text"].numpy(), outputs["score"].numpy()
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
        rows = decode(signatures, sources, beam_width=width, greedy=name == "greedy", progress=True)
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
