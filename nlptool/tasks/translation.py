"""Translation: sentence pairs in, an attention encoder-decoder that translates raw strings out.

Data: a registered parallel corpus (Multi30k, spa-eng) in one direction,
or the user's files with a source and a target column. The model is the
shared attention encoder-decoder (`nlptool.models.encoder_decoder`, RNNsearch
as Bahdanau, Cho and Bengio 2014 describe it). Evaluation: sacreBLEU BLEU
and chrF of beam-search and greedy output against the raw references, and
the references' perplexity. The export's `serving_default` takes `source`
and returns `text` and `score`, with beam search in the graph.
"""

import dataclasses
from typing import Literal

from nlptool.errors import UsageError
from nlptool.tasks import base
from nlptool.tasks.seq2seq import MODEL_RANGES, PairTask

DECODE_BATCH = 50  # sentences per call when translating many


@dataclasses.dataclass
class TokenizerConfig(base.TokenizerConfig):
    kind: Literal["sentencepiece", "word"] = "sentencepiece"
    vocab_size: int = 8000  # each side (or the shared model), reserved ids included
    shared: bool = False  # one model learnt from both languages instead of one per side
    # word only: split punctuation off and lowercase (word-level BLEU setups lowercase)
    lowercase: bool = False


@dataclasses.dataclass
class ModelConfig(base.Section):
    embedding_dim: int = 256  # size of each source and target token vector
    encoder_units: int = 256  # per direction: the annotations h_j have twice this size
    encoder_layers: int = 1  # stacked bidirectional GRU layers of the encoder
    decoder_units: int = 512  # the decoder GRU's state size
    attention_units: int = 512  # size of the Bahdanau attention's hidden layer
    dropout: float = 0.3  # on embeddings, between encoder layers and on the deep output
    tie_embeddings: bool = True  # the softmax reuses the target embedding

    ranges = MODEL_RANGES


@dataclasses.dataclass
class TrainingConfig(base.TrainingConfig):
    epochs: int = 20
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1  # share of each target's probability spread over the vocabulary
    max_length: int = 100  # training pairs whose source + </s> or <s> + target exceeds this many tokens are left out

    ranges = {"label_smoothing": base.RATE, "max_length": base.AT_LEAST_ONE}


@dataclasses.dataclass
class DecodingConfig(base.Section):
    beam_width: int = 5  # hypotheses kept per step; 1: greedy
    length_penalty: float = 0.6  # alpha of the GNMT penalty ((5 + |Y|) / 6) ** alpha
    # an output has at most max_length_ratio * source tokens + max_length_offset tokens
    max_length_ratio: float = 1.5
    max_length_offset: int = 10  # see max_length_ratio
    # a source is cut to its first this many tokens before it is translated, so that no single
    # request takes long (training pairs have at most training.max_length tokens)
    max_source_length: int = 200

    ranges = {
        "beam_width": base.BEAM_WIDTH,
        "max_source_length": base.AT_LEAST_ONE,
        "length_penalty": base.AT_LEAST_ZERO,
        "max_length_ratio": base.POSITIVE,
        "max_length_offset": base.AT_LEAST_ZERO,
    }


@dataclasses.dataclass
class TranslationConfig:
    source_lang: str = "de"  # a language of the dataset (multi30k: en, de, fr; spa_eng: en, es)
    target_lang: str = "en"  # the language translated into
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    decoding: DecodingConfig = dataclasses.field(default_factory=DecodingConfig)


class TranslationTask(PairTask):
    name = "translation"
    description = "translate sentences with an attention encoder-decoder"
    config_class = TranslationConfig
    columns = {"source": "the column holding the source sentences", "target": "the column holding their translations"}
    tokenizer_folders = {"source": "source_tokenizer", "target": "target_tokenizer"}
    monitor = ("val_perplexity", "min")
    input_name = "source"
    command = "translate"
    examples = "sentence pairs"
    kind = "translation"

    # --- command line ---

    def add_train_arguments(self, parser):
        parser.add_argument("--source-lang", help="the source language of --dataset (e.g. de; default: the config's)")
        parser.add_argument("--target-lang", help="the target language of --dataset (e.g. en; default: the config's)")

    def configure(self, config, args):
        languages = {name: getattr(args, name) for name in ("source_lang", "target_lang") if getattr(args, name)}
        return dataclasses.replace(config, **languages)

    def add_evaluate_arguments(self, parser):
        parser.add_argument("--beam-width", type=int, help="beam width (default: the run's config)")

    def evaluate_options(self, args):
        return {"beam_width": args.beam_width}

    def add_predict_arguments(self, parser):
        parser.add_argument("--beam-width", type=int, help="beams per sentence (default: the run's config)")
        parser.add_argument("--n-best", type=int, default=1, help="translations per sentence, with scores")
        parser.add_argument("--length-penalty", type=float, help="GNMT length penalty alpha (default: the run's)")
        parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
        parser.add_argument("--plot-attention", metavar="FILE.png", help="draw the attention of the translation")

    def predict_options(self, args):
        names = ("beam_width", "n_best", "length_penalty", "greedy", "plot_attention")
        return {name: getattr(args, name) for name in names}

    # --- data ---

    def check_dataset(self, dataset, config):
        for role, lang in (("source", config.source_lang), ("target", config.target_lang)):
            if lang not in dataset.columns:
                raise UsageError(
                    f"{dataset.name} has no language {lang!r} (the {role} language); it has {list(dataset.columns)}."
                )
        if config.source_lang == config.target_lang:
            raise UsageError(f"The source and target languages are both {config.source_lang!r}.")

    def registered_pairs(self, source, config, split):
        import pandas as pd

        frame = super().registered_pairs(source, config, split)
        return pd.DataFrame({"source": frame[config.source_lang], "target": frame[config.target_lang]})

    # --- preprocessing and model ---

    def prepare(self, config, splits):
        """(source, target) tokenisers learnt from the training pairs; one
        model for both sides when `tokenizer.shared`."""
        from nlptool import tokenizers

        t = config.tokenizer
        options = {"lowercase": t.lowercase, "split_punctuation": True} if t.kind == "word" else {}
        if t.kind == "sentencepiece":
            options = {"character_coverage": 1.0, "seed": config.training.seed}
        sources, targets = splits.train["source"].tolist(), splits.train["target"].tolist()
        if t.shared:
            shared = tokenizers.create(t.kind, t.vocab_size, **options).train(sources + targets)
            return config, base.Preprocessing({"source": shared, "target": shared})
        source = tokenizers.create(t.kind, t.vocab_size, **options).train(sources)
        target = tokenizers.create(t.kind, t.vocab_size, **options).train(targets)
        return config, base.Preprocessing({"source": source, "target": target})

    def build_model(self, config, preprocessing):
        from nlptool.models import encoder_decoder

        return encoder_decoder.build_model(
            config,
            preprocessing.tokenizers["source"].vocabulary_size(),
            preprocessing.tokenizers["target"].vocabulary_size(),
            name="translator",
        )

    def datasets(self, config, preprocessing, splits, epoch):
        import tensorflow as tf

        from nlptool.data.pairs import batch_pairs, encode_pairs, pair_dataset

        t = config.training
        tokenizers = (preprocessing.tokenizers["source"], preprocessing.tokenizers["target"])
        train_source, train_target = encode_pairs(*tokenizers, splits.train, t.max_length)
        target_tokens = int(tf.reduce_sum(train_target.row_lengths())) + int(train_target.nrows())  # each with </s>
        return base.Batches(
            batch_pairs(train_source, train_target, t.batch_size, shuffle=True, seed=t.seed, epoch=epoch),
            pair_dataset(*tokenizers, splits.validation, t.batch_size),
            info={"train_examples": int(train_target.nrows()), "target_tokens_per_epoch": target_tokens},
        )

    # --- evaluation, serving, prediction ---

    def evaluate(self, trained, pairs, split, beam_width=None):
        from nlptool.tasks.seq2seq import evaluate_pairs

        return evaluate_pairs(self, trained, pairs, split, beam_width=beam_width, output_file="translations.tsv")

    def summary(self, metrics):
        beam, greedy = metrics["beam"], metrics["greedy"]
        return (
            f"{metrics['split']}: {metrics['pairs']:,} pairs, perplexity {metrics['perplexity']:.2f}, "
            f"BLEU {beam['bleu']:.2f} / chrF {beam['chrf']:.2f} (beam {beam['beam_width']}), "
            f"BLEU {greedy['bleu']:.2f} / chrF {greedy['chrf']:.2f} (greedy)"
        )

    def serving_module(self, trained):
        from nlptool.models.seq2seq_serving import EncoderDecoderServing

        tokenizers = trained.preprocessing.tokenizers
        module = EncoderDecoderServing(
            tokenizers["source"], tokenizers["target"], trained.model, trained.config.decoding
        )
        return module, self.signature_functions(module)

    def predict(
        self,
        signatures,
        sources,
        beam_width=None,
        n_best=1,
        length_penalty=None,
        greedy=False,
        plot_attention=None,
        progress=False,
    ):
        from nlptool.tasks.seq2seq import decode, draw_attention

        results = decode(
            signatures,
            sources,
            beam_width,
            n_best,
            greedy,
            DECODE_BATCH,
            progress,
            rules=DecodingConfig,
            length_penalty=length_penalty,
        )
        if plot_attention:
            if len(sources) != 1:
                raise UsageError("--plot-attention draws one sentence; pass a single text.")
            draw_attention(signatures, sources[0], results[0]["text"], plot_attention, "translation")
        return results

    def format_prediction(self, source, row):
        if len(row["n_best"]) > 1:
            return "\n".join(f"{score:.4f}\t{text}\t{source}" for text, score in row["n_best"])
        return f"{row['text']}\t{source}"
