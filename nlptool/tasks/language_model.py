"""Language modelling: a corpus in, a GRU language model that scores and continues text out.

Data: a registered corpus (PTB, WikiText-2, Tiny Shakespeare) or the
user's text files (one line a row) or a column of a table file. The model
is `nlptool.models.language_model`, trained by truncated BPTT on the
corpus as one token stream. Evaluation: perplexity per token (and per
word, bits per character, where they apply). The export's
`serving_default` takes `prompt` and returns the continuation `text`;
`generate` and `beam_search` take the decoding settings.
"""

import dataclasses
import math
from typing import Literal

from nlptool.errors import UsageError
from nlptool.tasks import base

LM_SPLITS = ("train", "valid", "test")
# what a model started from another (--init-from) takes over from it; its dropout, training and tying stay
# the config's (an untied softmax starts from what the tied one computes)
ARCHITECTURE_FIELDS = ("embedding_dim", "units", "layers")


@dataclasses.dataclass
class TokenizerConfig(base.TokenizerConfig):
    vocab_size: int = 10_004  # reserved ids included
    # word only: pre-tokenised corpora (PTB, WikiText-2) keep case and punctuation as they are
    lowercase: bool = False
    split_punctuation: bool = False  # word only: split punctuation off words
    # "line": every line is a sentence ending in </s> (PTB, WikiText-2);
    # "text": the corpus is one text whose newlines are ordinary characters (character models)
    unit: Literal["line", "text"] = "line"


@dataclasses.dataclass
class ModelConfig(base.Section):
    embedding_dim: int = 400  # size of each token vector (the last GRU layer's size when tied)
    units: int = 400  # GRU state size of every layer
    layers: int = 2  # stacked GRU layers
    dropout: float = 0.4  # variational: on each GRU layer's input and on the last output
    tie_weights: bool = True  # the softmax reuses the embedding matrix
    # "backward": the model reads the corpus from its last token to its first and predicts the
    # token before; it generates the text that comes before a prompt. A forward and a backward
    # model over one embedding start both directions of a bidirectional classifier.
    direction: Literal["forward", "backward"] = "forward"
    # false: the embedding (and with tie_weights the softmax's matrix) keeps the weights the
    # model starts from (--init-from): a backward model started from a forward one then reads
    # the same word vectors, which a classifier's two directions share; untied, its softmax
    # still learns
    train_embedding: bool = True

    ranges = {**dict.fromkeys(("embedding_dim", "units", "layers"), base.AT_LEAST_ONE), "dropout": base.RATE}


@dataclasses.dataclass
class TrainingConfig(base.TrainingConfig):
    epochs: int = 10
    batch_size: int = 32  # parallel columns of the token stream
    # SGD with a large rate and tight clipping, as Zaremba et al. and the PyTorch word-LM
    # example train: with Adam, states carried across windows saturate early in training
    # (every unit near +-1, a constant state that encodes the unigram distribution) and
    # learning stalls at unigram perplexity; SGD does not fall into it
    learning_rate: float = 20.0
    clip_norm: float | None = 0.25
    window: int = 35  # time steps per truncated-BPTT window
    optimizer: Literal["sgd", "adam"] = "sgd"  # see learning_rate for why SGD is the default
    lr_decay: float = 0.6  # the learning rate is multiplied by this every epoch from `lr_decay_start` on
    lr_decay_start: int = 3  # epochs at the full learning rate
    # after an epoch that ends with a validation perplexity above the best so far (a rate too
    # high for this corpus and model can throw a model off in one epoch), training goes on from
    # the best weights at the rate times this, from then on; None: on from where it is
    lr_backoff: float | None = 0.25
    # 0: train on the full softmax. N > 0: a sampled softmax (Jean et al. 2015) over the
    # targets and N draws (with replacement) from a log-uniform (Zipf) distribution over the
    # ids, which the word tokeniser orders by frequency; 1,024 draws from 20,000 ids give
    # about 590 distinct words. Training then costs O(N) per token instead of
    # O(vocabulary); validation, evaluation and generation always use the full softmax.
    softmax_samples: int = 0

    ranges = {
        "window": base.AT_LEAST_ONE,
        "lr_decay": base.POSITIVE,
        "lr_decay_start": base.AT_LEAST_ZERO,
        "softmax_samples": base.AT_LEAST_ZERO,
    }


@dataclasses.dataclass
class GenerationConfig(base.Section):
    max_new_tokens: int = 50  # tokens generated after the prompt, at most
    temperature: float = 1.0  # divides the logits before sampling; 0: greedy
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no nucleus filter
    stop_at_end: bool = True  # stop a sample at </s> (for line-unit models)
    # a prompt is read up to its last this many tokens (the context nearest the continuation),
    # so that no single request takes long
    max_prompt_tokens: int = 1024
    # beam search only: alpha of the GNMT length normalisation, log P / ((5 + length) / 6) ** alpha
    # (0: plain log-probability, which favours ending early)
    length_penalty: float = 0.0
    min_new_tokens: int = 0  # beam search only: the fewest tokens a continuation has before it may end

    ranges = {
        "max_new_tokens": base.OUTPUT_TOKENS,
        "length_penalty": base.AT_LEAST_ZERO,
        "min_new_tokens": base.Range(0, base.OUTPUT_TOKENS.high),
        "max_prompt_tokens": base.AT_LEAST_ONE,
        "temperature": base.AT_LEAST_ZERO,  # 0: greedy
        "top_k": base.AT_LEAST_ZERO,
        "top_p": base.PROBABILITY,
    }


@dataclasses.dataclass
class LanguageModelConfig:
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)


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


def hold_out_last(lines, fraction, where):
    """(training lines, validation lines): the last `fraction` of the lines
    (at least one) held out in order, since a running text is not shuffled."""
    from nlptool.data import DataError

    held_out = max(1, int(len(lines) * fraction))
    if len(lines) - held_out < 1:
        raise DataError(f"{where} has too few lines to hold some out for validation; pass validation data.")
    return lines[:-held_out], lines[-held_out:]


def word_count(lines, unit):
    """Words of the corpus in the PTB convention (whitespace-split words plus
    one end of line per line); None for "text" corpora."""
    return sum(len(line.split()) + 1 for line in lines) if unit == "line" else None


def learning_rate_schedule(config):
    """The rate of each epoch, `rate(epoch)`: constant for the first
    `lr_decay_start` epochs, then times `lr_decay` per epoch (and times
    `lr_backoff` after each epoch that ends worse, see
    `training.ScheduleWithBackOff`)."""
    t = config.training

    def rate(epoch):
        return t.learning_rate * t.lr_decay ** max(0, epoch - t.lr_decay_start + 1)

    return rate


class LanguageModelTask(base.Task):
    name = "language-model"
    description = "learn to predict the next token of a corpus; score and continue text"
    config_class = LanguageModelConfig
    columns = {"text": "the column holding the texts (table files only; a .txt file is one text a line)"}
    monitor = ("val_perplexity", "min")
    signatures = ("serving_default", "generate", "beam_search", "generation_defaults")
    input_name = "prompt"
    command = "generate"
    examples = "lines"

    # --- command line ---

    def add_train_arguments(self, parser):
        parser.add_argument(
            "--init-from",
            metavar="RUN_DIR|preset:NAME",
            help="start from a language model (a preset, `nlptool presets`, or a run): its tokeniser and weights, "
            "and the shape of its model; train it on your own text (the first step of fine-tuning a classifier "
            "from a preset on a new domain)",
        )

    def train_options(self, args):
        return {"init_from": base.start_spec(args.init_from)}

    def add_predict_arguments(self, parser):
        parser.add_argument("--max-new-tokens", type=int, help="tokens to add (default: the run's config)")
        parser.add_argument("--temperature", type=float, help="sampling temperature; 0 is greedy (default: the run's)")
        parser.add_argument("--top-k", type=int, help="sample among the k most probable tokens; 0: all")
        parser.add_argument("--top-p", type=float, help="sample within this probability mass; 1: all")
        parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same text")
        parser.add_argument("--beam-width", type=int, help="beam search with this many beams instead of sampling")
        parser.add_argument(
            "--length-penalty", type=float, help="beam search: GNMT length normalisation alpha (default: the run's)"
        )
        parser.add_argument(
            "--min-new-tokens", type=int, help="beam search: fewest tokens before the end (default: the run's)"
        )

    def predict_options(self, args):
        names = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "beam_width", "length_penalty")
        names += ("min_new_tokens",)
        return {name: getattr(args, name) for name in names}

    # --- data ---

    def read_data(self, source, config):
        if source.dataset:
            train, validation, test = (self._dataset_lines(source, split) for split in LM_SPLITS)
        else:
            train = self._file_lines(source, source.train_file)
            if source.validation_file:
                validation = self._file_lines(source, source.validation_file)
            else:
                train, validation = hold_out_last(train, config.training.validation_fraction, source.train_file)
            test = self._file_lines(source, source.test_file) if source.test_file else None
        if source.max_train_examples:
            train = train[: source.max_train_examples]
        return base.Splits(train, validation, test)

    def read_split(self, source, config, split=None):
        if source.dataset:
            split = split or "test"
            if split not in LM_SPLITS:
                raise UsageError(f"A language-model corpus has the splits {list(LM_SPLITS)}, not {split!r}.")
            return self._dataset_lines(source, split), split
        return self._file_lines(source, source.test_file), source.test_file

    def from_frames(self, train, validation=None, test=None, columns=None, config=None):
        def lines(data, where):
            if data is None or isinstance(data, list):
                return data
            return self.role_frame(data, columns, where)["text"].tolist()

        train, validation, test = (
            lines(train, "the training data"),
            lines(validation, "the validation data"),
            lines(test, "the test data"),
        )
        if validation is None:
            fraction = (config or LanguageModelConfig()).training.validation_fraction
            train, validation = hold_out_last(train, fraction, "the training data")
        return base.Splits(train, validation, test)

    def _dataset_lines(self, source, split):
        from nlptool.data import datasets

        if datasets.get(source.dataset).task != self.name:
            names = sorted(n for n, d in datasets.REGISTRY.items() if d.task == self.name)
            raise UsageError(f"Dataset {source.dataset!r} is not a language-modelling corpus; choose one of {names}.")
        return datasets.load(source.dataset, split, data_dir=source.data_dir)["text"].tolist()

    def _file_lines(self, source, path):
        """The lines of a text file, or the text column (default "text") of a
        table file: one by its extension, or any file given a delimiter. The
        command line and `nlptool.train` always name a column (the role's
        own name by default); a .txt corpus has none, so it is not read.
        Messages name the column by its flag, as the other tasks' do."""
        from pathlib import Path

        from nlptool.data import read_lines, read_table
        from nlptool.data.formats import EXTENSIONS
        from nlptool.errors import DataError

        if Path(path).suffix.lower() not in EXTENSIONS and source.delimiter is None:
            return read_lines(path)
        column = source.columns.get("text", "text")
        lines = read_table(path, {self.column_flags()["text"]: column}, source.delimiter, allow_empty=True)
        lines = lines[column].tolist()
        if not any(line.strip() for line in lines):
            raise DataError(f"{path} holds no text.")
        return lines

    # --- preprocessing and model ---

    def prepare(self, config, splits, init_from=None):
        from nlptool import tokenizers
        from nlptool.models.language_model import training_texts

        if init_from is not None:
            start = base.trained_run(init_from, self.name)
            old = start.config
            if config.model.tie_weights and not old.model.tie_weights:
                raise UsageError(
                    f"{init_from} has a softmax of its own, not tied to its embedding: start from it with "
                    "model.tie_weights=false."
                )
            config = dataclasses.replace(
                config,
                tokenizer=old.tokenizer,
                model=dataclasses.replace(
                    config.model, **{name: getattr(old.model, name) for name in ARCHITECTURE_FIELDS}
                ),
            )
            return config, base.Preprocessing({"text": start.preprocessing.tokenizers["text"]}, start=start)
        t = config.tokenizer
        options = {"lowercase": t.lowercase, "split_punctuation": t.split_punctuation} if t.kind == "word" else {}
        tokenizer = tokenizers.create(t.kind, t.vocab_size, **options)
        return config, base.Preprocessing({"text": tokenizer.train(training_texts(splits.train, t.unit))})

    def build_model(self, config, preprocessing):
        from nlptool.models import language_model

        return language_model.build_model(config, preprocessing.tokenizers["text"].vocabulary_size())

    def initialize(self, model, preprocessing, init_from=None):
        from nlptool.models.language_model import copy_weights

        if preprocessing.start is not None:
            copy_weights(preprocessing.start.model, model)

    def compile(self, model, config):
        from nlptool import training

        model.carry_states(config.training.batch_size)
        model.compile(optimizer=training.optimizer(config.training, config.training.optimizer), jit_compile=False)

    def datasets(self, config, preprocessing, splits, epoch):
        from nlptool.models.language_model import token_stream, window_dataset

        tokenizer, unit, t = preprocessing.tokenizers["text"], config.tokenizer.unit, config.training
        direction = config.model.direction
        train_stream = token_stream(tokenizer, splits.train, unit, direction)
        validation_stream = token_stream(tokenizer, splits.validation, unit, direction)
        return base.Batches(
            window_dataset(train_stream, t.batch_size, t.window),
            window_dataset(validation_stream, t.batch_size, t.window),
            info={"train_tokens": int(len(train_stream))},
        )

    def schedule(self, config):
        return learning_rate_schedule(config), config.training.lr_backoff

    # --- evaluation, serving, prediction ---

    def evaluate(self, trained, lines, split):
        import time

        from nlptool.models.language_model import stream_nll, token_stream

        config, tokenizer = trained.config, trained.preprocessing.tokenizers["text"]
        unit = config.tokenizer.unit
        stream = token_stream(tokenizer, lines, unit, config.model.direction)
        started = time.monotonic()
        nll, tokens = stream_nll(trained.model, stream, progress=True)
        metrics = {
            "split": split,
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
        return metrics

    def summary(self, metrics):
        extra = "".join(
            f", {name.replace('_', ' ')} {metrics[name]:.4f}"
            for name in ("bits_per_character", "bits_per_byte", "word_perplexity")
            if name in metrics
        )
        return f"{metrics['split']}: {metrics['tokens']:,} tokens, perplexity {metrics['perplexity']:.2f}{extra}"

    def serving_module(self, trained):
        from nlptool.models.language_model_serving import LanguageModelServing

        config = trained.config
        module = LanguageModelServing(
            trained.preprocessing.tokenizers["text"],
            trained.model,
            config.generation,
            backward=config.model.direction == "backward",
        )
        return module, {
            "serving_default": module.serve,
            "generate": module.generate,
            "beam_search": module.beam_search,
            "generation_defaults": module.generation_defaults.get_concrete_function(),
        }

    def predict(
        self,
        signatures,
        prompts,
        max_new_tokens=None,
        temperature=None,
        top_k=None,
        top_p=None,
        seed=0,
        beam_width=None,
        length_penalty=None,
        min_new_tokens=None,
    ):
        """Continuations of `prompts`; unset settings take the run's generation
        defaults. With `beam_width`, a beam search instead of sampling, with
        `length_penalty` and `min_new_tokens` (which sampling does not take)."""
        import tensorflow as tf

        settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
        settings.update(length_penalty=length_penalty, min_new_tokens=min_new_tokens)
        try:
            GenerationConfig.check(**settings)
        except ValueError as error:
            raise UsageError(str(error)) from None
        beam_only = [name for name in ("length_penalty", "min_new_tokens") if settings[name] is not None]
        if beam_width is None and beam_only:
            raise UsageError(f"{beam_only[0]} is a beam search setting: give beam_width too.")
        defaults = {k: v.numpy().item() for k, v in signatures["generation_defaults"]().items()}
        if max_new_tokens is None:
            max_new_tokens = defaults["max_new_tokens"]
        if beam_width is not None:
            if beam_width not in base.BEAM_WIDTH:
                raise UsageError(f"beam_width must be {base.BEAM_WIDTH}, not {beam_width}.")
            beam = {
                "prompt": tf.constant(prompts),
                "max_new_tokens": tf.constant(max_new_tokens, tf.int32),
                "beam_width": tf.constant(beam_width, tf.int32),
            }
            if "length_penalty" in defaults:
                beam["length_penalty"] = tf.constant(
                    defaults["length_penalty"] if length_penalty is None else length_penalty, tf.float32
                )
                beam["min_new_tokens"] = tf.constant(
                    defaults["min_new_tokens"] if min_new_tokens is None else min_new_tokens, tf.int32
                )
            elif beam_only:  # an export of nlptool 0.1.0 before these settings existed: plain beam search only
                raise UsageError(f"This export's beam search takes no {beam_only[0]}; export the run again for it.")
            outputs = signatures["beam_search"](**beam)
        else:
            outputs = signatures["generate"](
                prompt=tf.constant(prompts),
                max_new_tokens=tf.constant(max_new_tokens, tf.int32),
                temperature=tf.constant(defaults["temperature"] if temperature is None else temperature, tf.float32),
                top_k=tf.constant(defaults["top_k"] if top_k is None else top_k, tf.int32),
                top_p=tf.constant(defaults["top_p"] if top_p is None else top_p, tf.float32),
                seed=tf.constant(seed, tf.int64),
            )
        return [{"text": text.decode("utf-8")} for text in outputs["text"].numpy()]

    def format_prediction(self, prompt, row):
        return f"{prompt}\t{row['text']}"
