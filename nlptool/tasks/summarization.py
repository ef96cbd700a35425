"""Summarisation: (text, summary) pairs in, a pointer-generator that summarises raw strings out.

Data: Gigaword headline generation or BBC News (registered, from a data
directory), or the user's files with a text and a summary column. The model
is the shared attention encoder-decoder with the copy distribution and
coverage of See, Liu and Manning (2017) (`nlptool.models.pointer_generator`);
one tokeniser serves both sides. Evaluation: ROUGE-1/2/L F1 (`rouge-score`)
of beam-search and greedy output and of the lead baseline on the same texts,
how much of each output is copied from its text and how much it repeats.
The export's `serving_default` takes `text` and returns `summary` and `score`.
"""

import dataclasses
from typing import Literal

from nlptool.errors import UsageError
from nlptool.tasks import base
from nlptool.tasks.seq2seq import MODEL_RANGES, PairTask

DECODE_BATCH = 32  # texts per call when summarising many
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# the scalar inputs of the beam_search signature beside beam_width and n_best
BEAM_OPTIONS = ("length_penalty", "coverage_penalty", "min_length", "max_length", "block_trigrams")


@dataclasses.dataclass
class TokenizerConfig(base.TokenizerConfig):
    # word: out-of-vocabulary words of a text get temporary ids and can be copied as they are;
    # sentencepiece: every piece is in the vocabulary, and the copy lands on the text's pieces
    kind: Literal["word", "sentencepiece"] = "word"
    vocab_size: int = 20_000  # one vocabulary for texts and summaries, reserved ids included
    lowercase: bool = True  # word only
    # word only: split punctuation and symbols off words; off for text that is already tokenised (Gigaword)
    split_punctuation: bool = True


@dataclasses.dataclass
class ModelConfig(base.Section):
    embedding_dim: int = 128  # size of each token vector (texts and summaries share the embedding)
    encoder_units: int = 256  # per direction
    encoder_layers: int = 1  # stacked bidirectional GRU layers of the encoder
    decoder_units: int = 256  # the decoder GRU's state size
    attention_units: int = 256  # size of the Bahdanau attention's hidden layer
    dropout: float = 0.2  # on embeddings, between encoder layers and on the deep output
    tie_embeddings: bool = True  # the softmax reuses the embedding
    pointer: bool = True  # the copy distribution (pointer-generator)
    coverage: bool = True  # coverage in the attention, and the coverage loss in a final phase

    ranges = MODEL_RANGES


@dataclasses.dataclass
class TrainingConfig(base.TrainingConfig):
    epochs: int = 20
    clip_norm: float | None = 2.0
    label_smoothing: float = 0.0  # only without the pointer
    max_source_length: int = 100  # tokens of a text the model reads (training and serving); the rest is cut
    max_target_length: int = 40  # tokens of a summary it learns from; the rest is cut
    coverage_weight: float = 1.0  # lambda of the coverage loss in its phase
    coverage_epochs: int = 1  # epochs of the final phase with the coverage loss

    ranges = {
        "label_smoothing": base.RATE,
        "max_source_length": base.AT_LEAST_ONE,
        "max_target_length": base.AT_LEAST_ONE,
        "coverage_weight": base.AT_LEAST_ZERO,
        "coverage_epochs": base.AT_LEAST_ONE,
    }


@dataclasses.dataclass
class DecodingConfig(base.Section):
    beam_width: int = 4  # hypotheses kept per step; 1: greedy
    length_penalty: float = 1.0  # alpha of the GNMT penalty ((5 + |Y|) / 6) ** alpha
    coverage_penalty: float = 0.0  # beta of the GNMT coverage penalty
    min_length: int = 1  # tokens, </s> included
    max_length: int = 30  # tokens, </s> included
    block_trigrams: bool = False  # no trigram twice in a summary

    ranges = {
        "beam_width": base.BEAM_WIDTH,
        "length_penalty": base.AT_LEAST_ZERO,
        "coverage_penalty": base.AT_LEAST_ZERO,
        "min_length": base.AT_LEAST_ONE,  # and at most max_length (checked together below)
        "max_length": base.OUTPUT_TOKENS,
    }

    def __post_init__(self):
        super().__post_init__()
        if not self.min_length <= self.max_length:
            raise ValueError(f"Need 1 <= min_length <= max_length, got {self.min_length} and {self.max_length}.")


@dataclasses.dataclass
class EvaluationConfig(base.Section):
    lead_words: int = 8  # the lead baseline: the first this many words of the text

    ranges = {"lead_words": base.AT_LEAST_ONE}


@dataclasses.dataclass
class SummarizationConfig:
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)

    def __post_init__(self):
        if self.model.pointer and self.training.label_smoothing:
            raise ValueError(
                "training.label_smoothing must be 0 with model.pointer: the copy distribution would put "
                "target mass on ids that cannot occur."
            )


class SummarizationTask(PairTask):
    name = "summarization"
    description = "summarise texts with a pointer-generator (copy and coverage)"
    config_class = SummarizationConfig
    columns = {"text": "the column holding the texts", "summary": "the column holding their summaries"}
    tokenizer_folders = {"text": "tokenizer"}
    monitor = ("val_perplexity", "min")
    input_name = "text"
    command = "summarize"
    examples = "text-summary pairs"
    kind = "summarisation"

    # --- command line ---

    def add_evaluate_arguments(self, parser):
        parser.add_argument("--beam-width", type=int, help="beam width (default: the run's config)")

    def evaluate_options(self, args):
        return {"beam_width": args.beam_width}

    def add_predict_arguments(self, parser):
        parser.add_argument("--beam-width", type=int, help="beams per text (default: the run's config)")
        parser.add_argument("--n-best", type=int, default=1, help="summaries per text, with scores")
        parser.add_argument("--length-penalty", type=float, help="GNMT length penalty alpha (default: the run's)")
        parser.add_argument("--coverage-penalty", type=float, help="GNMT coverage penalty beta (default: the run's)")
        parser.add_argument("--min-length", type=int, help="fewest tokens of a summary (default: the run's)")
        parser.add_argument("--max-length", type=int, help="most tokens of a summary (default: the run's)")
        blocking = parser.add_mutually_exclusive_group()
        blocking.add_argument(
            "--block-trigrams",
            dest="block_trigrams",
            action="store_true",
            default=None,
            help="never repeat a trigram (default: the run's)",
        )
        blocking.add_argument("--no-block-trigrams", dest="block_trigrams", action="store_false")
        parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
        parser.add_argument("--plot-attention", metavar="FILE.png", help="draw the attention and p_gen of the summary")

    def predict_options(self, args):
        names = (
            "beam_width", "n_best", "length_penalty", "coverage_penalty", "min_length", "max_length",
            "block_trigrams", "greedy", "plot_attention",
        )  # fmt: skip
        return {name: getattr(args, name) for name in names}

    # --- data ---

    # --- preprocessing and model ---

    def prepare(self, config, splits):
        """One tokeniser learnt from the training texts and summaries."""
        from nlptool import tokenizers

        t = config.tokenizer
        if t.kind == "word":
            options = {"lowercase": t.lowercase, "split_punctuation": t.split_punctuation}
        else:
            options = {"character_coverage": 1.0, "seed": config.training.seed}
        texts = splits.train["text"].tolist() + splits.train["summary"].tolist()
        tokenizer = tokenizers.create(t.kind, t.vocab_size, **options).train(texts)
        return config, base.Preprocessing({"text": tokenizer})

    def build_model(self, config, preprocessing):
        from nlptool.models import pointer_generator

        return pointer_generator.build_model(config, preprocessing.tokenizers["text"].vocabulary_size())

    def batches(self, config, tokenizer, frame, shuffle=False, epoch=None):
        """Teacher-forcing batches of `frame`, in the model's (extended) ids."""
        from nlptool.data.pairs import batch_pairs, encode_copy_pairs

        t = config.training
        source, target = encode_copy_pairs(
            tokenizer, frame, t.max_source_length, t.max_target_length, extend=self._copies_words(config, tokenizer)
        )
        batches = batch_pairs(source, target, t.batch_size, shuffle=shuffle, seed=t.seed, epoch=epoch)
        return batches, source, target

    @staticmethod
    def _copies_words(config, tokenizer):
        return config.model.pointer and hasattr(tokenizer, "split")

    def datasets(self, config, preprocessing, splits, epoch):
        import tensorflow as tf

        from nlptool import training

        t = config.training
        tokenizer = preprocessing.tokenizers["text"]
        train, _, target = self.batches(config, tokenizer, splits.train, shuffle=True, epoch=epoch)
        validation, _, _ = self.batches(config, tokenizer, splits.validation)
        target_tokens = int(tf.reduce_sum(target.row_lengths())) + int(target.nrows())  # each with </s>
        phase = None
        if config.model.coverage:

            def phase(checkpoint, stopping, backup_dir, clock):
                return training.CoveragePhase(
                    t.coverage_weight,
                    t.coverage_epochs,
                    t.epochs,
                    checkpoint,
                    stopping,
                    backup_dir,
                    t.max_minutes,
                    clock,
                )

        return base.Batches(
            train,
            validation,
            info={"train_examples": int(target.nrows()), "target_tokens_per_epoch": target_tokens},
            phase=phase,
        )

    # --- evaluation, serving, prediction ---

    def evaluate(self, trained, pairs, split, beam_width=None):
        """ROUGE-1/2/L F1 of beam and greedy summaries and of the lead
        baseline, their copy and repetition rates, and the references'
        perplexity; every output goes to RUN_DIR/summaries.tsv."""
        import math
        import time

        from nlptool.files import write_atomically
        from nlptool.tasks.seq2seq import decode, reference_nll

        config = trained.config
        texts, references = pairs["text"].tolist(), pairs["summary"].tolist()
        batches, _, _ = self.batches(config, trained.preprocessing.tokenizers["text"], pairs)
        _, signatures = self.serving_module(trained)
        beam_width = beam_width or config.decoding.beam_width
        metrics = {"split": split, "pairs": len(pairs), "perplexity": math.exp(reference_nll(trained.model, batches))}
        outputs = {}
        for name, width in (("beam", beam_width), ("greedy", 1)):
            started = time.monotonic()
            rows = decode(
                signatures, texts, beam_width=width, greedy=name == "greedy", batch=DECODE_BATCH, progress=True,
                input_name="text", output_name="summary", **dict.fromkeys(BEAM_OPTIONS),
            )  # fmt: skip
            outputs[name] = [row["text"] for row in rows]
            metrics[name] = {
                **summary_scores(outputs[name], references, texts),
                "beam_width": width,
                "seconds": time.monotonic() - started,
            }
        lead_words = config.evaluation.lead_words
        outputs["lead"] = [lead(text, lead_words) for text in texts]
        metrics["lead"] = {**summary_scores(outputs["lead"], references, texts), "words": lead_words}
        # the lead cut to the length of each beam summary: the same length, the same budget of words
        matched = [lead(text, len(summary.split())) for text, summary in zip(texts, outputs["beam"])]
        metrics["lead_matched"] = summary_scores(matched, references, texts)
        metrics["reference"] = copy_and_repetition(references, texts)
        metrics["rouge_settings"] = "rouge-score: ROUGE-1, ROUGE-2, ROUGE-L (sentence-level LCS), F1, Porter stemmer"
        for kind in ROUGE_TYPES:
            metrics[kind] = metrics["beam"][kind]

        def write_rows(stream):
            stream.write("text\treference\tbeam\tgreedy\tlead\n")
            for row in zip(texts, references, outputs["beam"], outputs["greedy"], outputs["lead"]):
                stream.write("\t".join(" ".join(str(part).split()) for part in row) + "\n")

        write_atomically(trained.path / "summaries.tsv", write_rows)
        return metrics

    def summary(self, metrics):
        def scores(part):
            return "/".join(f"{100 * part[kind]:.2f}" for kind in ROUGE_TYPES)

        beam, greedy, lead_part = metrics["beam"], metrics["greedy"], metrics["lead"]
        return (
            f"{metrics['split']}: {metrics['pairs']:,} pairs, perplexity {metrics['perplexity']:.2f}, "
            f"ROUGE-1/2/L {scores(beam)} (beam {beam['beam_width']}), {scores(greedy)} (greedy), "
            f"{scores(lead_part)} (lead {lead_part['words']} words); repeated trigrams "
            f"{100 * beam['repeated_trigrams']:.1f} %, copied words {100 * beam['copied_words']:.1f} %"
        )

    def serving_module(self, trained):
        from nlptool.models.summarization_serving import SummarizationServing

        config = trained.config
        module = SummarizationServing(
            trained.preprocessing.tokenizers["text"], trained.model, config.decoding, config.training.max_source_length
        )
        return module, self.signature_functions(module)

    def predict(
        self,
        signatures,
        texts,
        beam_width=None,
        n_best=1,
        length_penalty=None,
        coverage_penalty=None,
        min_length=None,
        max_length=None,
        block_trigrams=None,
        greedy=False,
        plot_attention=None,
        progress=False,
    ):
        from nlptool.tasks.seq2seq import decode

        values = (length_penalty, coverage_penalty, min_length, max_length, block_trigrams)
        options = dict(zip(BEAM_OPTIONS, values, strict=True))
        if greedy and any(value is not None for value in values):
            raise UsageError("Greedy decoding takes the run's decoding settings; drop --greedy to set them.")
        rows = decode(
            signatures, texts, beam_width, n_best, greedy, DECODE_BATCH, progress,
            input_name="text", output_name="summary", rules=DecodingConfig, **options,
        )  # fmt: skip
        if plot_attention:
            if len(texts) != 1:
                raise UsageError("--plot-attention draws one text; pass a single text.")
            draw_attention(signatures, texts[0], rows[0]["text"], plot_attention)
        return rows

    def format_prediction(self, text, row):
        if len(row["n_best"]) > 1:
            return "\n".join(f"{score:.4f}\t{summary}" for summary, score in row["n_best"])
        return row["text"]


# --- metrics ---


def lead(text, words):
    """The first `words` words of `text` (split at white space)."""
    return " ".join(text.split()[:words])


def trigrams(words):
    return [tuple(words[i : i + 3]) for i in range(len(words) - 2)]


def copy_and_repetition(summaries, texts):
    """copied_words: the share of summary words that occur in their text;
    repeated_trigrams: the share of summary trigrams that repeat an earlier
    trigram of the same summary (pooled over the summaries); words: the mean
    summary length in words."""
    copied = total = repeated = count = 0
    for summary, text in zip(summaries, texts):
        words, source = summary.split(), set(text.split())
        copied += sum(word in source for word in words)
        total += len(words)
        grams = trigrams(words)
        repeated += len(grams) - len(set(grams))
        count += len(grams)
    return {
        "copied_words": copied / max(total, 1),
        "repeated_trigrams": repeated / max(count, 1),
        "words": total / max(len(summaries), 1),
    }


def summary_scores(summaries, references, texts):
    """Mean ROUGE-1/2/L F1 of `summaries` against `references` (rouge-score,
    Porter stemming, its default tokenisation: lower case, runs of letters and
    digits), and `copy_and_repetition`."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for summary, reference in zip(summaries, references):
        scores = scorer.score(reference, summary)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    n = max(len(summaries), 1)
    return {**{kind: total / n for kind, total in totals.items()}, **copy_and_repetition(summaries, texts)}


# --- plots ---


def attention(signatures, text, summary):
    """(weights (summary pieces, text pieces), p_gen per summary piece, text pieces, summary pieces)."""
    import tensorflow as tf

    outputs = signatures["attention"](text=tf.constant([text]), summary=tf.constant([summary]))
    text_pieces = [p.decode("utf-8") for p in outputs["text_pieces"].numpy()[0]]
    summary_pieces = [p.decode("utf-8") for p in outputs["summary_pieces"].numpy()[0]]
    text_pieces = text_pieces[: len(text_pieces) - text_pieces[::-1].index("</s>")]
    summary_pieces = summary_pieces[: len(summary_pieces) - summary_pieces[::-1].index("</s>")]
    weights = outputs["weights"].numpy()[0][: len(summary_pieces), : len(text_pieces)]
    return weights, outputs["p_gen"].numpy()[0][: len(summary_pieces)], text_pieces, summary_pieces


def draw_attention(signatures, text, summary, path):
    """The attention of `summary` for `text` with p_gen per summary token, as a heat map (PNG) at `path`."""
    import logging

    from nlptool import plots

    weights, p_gen, text_pieces, summary_pieces = attention(signatures, text, summary)
    plots.plot_attention(
        weights, text_pieces, summary_pieces, path, source_label="text", target_label="summary", row_values=p_gen
    )
    logging.getLogger("nlptool").info("wrote %s", path)
    return path
