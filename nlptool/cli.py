"""The `nlptool` command line.

nlptool train sentiment (--dataset NAME | --csv FILE --text-column C --label-column C
                         [--validation-csv FILE] [--test-csv FILE])
                        [--config FILE.yaml ...] [--set key=value ...] [--epochs N]
                        [--max-train-examples N] [--data-dir DIR] [--init-from RUN_DIR] --run-dir DIR
nlptool train language-model (--dataset NAME | --text-file FILE | --csv FILE --text-column C)
                        [--validation-file FILE] [--test-file FILE] [--config ...] [--set ...]
                        [--epochs N] [--max-train-examples N] [--data-dir DIR] --run-dir DIR
nlptool train translation (--dataset NAME --source-lang L --target-lang L
                           | --csv FILE --source-column C --target-column C [--validation-csv FILE] [--test-csv FILE])
                        [--config ...] [--set ...] [--epochs N] [--max-train-examples N] [--data-dir DIR] --run-dir DIR
nlptool evaluate RUN_DIR [--dataset NAME --split S | --csv FILE --text-column C [--label-column C]
                          | --text-file FILE]
                         (translation: [--dataset NAME --split S | --csv FILE] [--beam-width W])
nlptool export RUN_DIR OUT [--overwrite]
nlptool predict RUN_DIR_OR_EXPORT TEXT...                  (sentiment)
nlptool generate RUN_DIR_OR_EXPORT PROMPT... [--max-new-tokens N] [--temperature T] [--top-k K]
                        [--top-p P] [--seed S] [--beam-width W]   (language model)
nlptool translate RUN_DIR_OR_EXPORT TEXT... [--beam-width W] [--n-best N] [--greedy]
                        [--plot-attention FILE.png]                (translation)
nlptool tokenizer train --kind {word,char,byte,wordpiece,sentencepiece} [--vocab-size N]
                        --input FILE [--column NAME] --out DIR
nlptool tokenizer encode DIR TEXT...
"""

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from nlptool.tokenizers import KINDS
from nlptool.tokenizers.files import TOKENIZER_FILE


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def read_texts(path, column=None):
    """One example per line of a text file, or a CSV column with `column`."""
    from nlptool.data.csv import DataError
    from nlptool.data.text import read_lines

    try:
        return read_lines(path, column)
    except DataError as error:
        raise UsageError(str(error)) from None


def make_tokenizer(kind, vocab_size):
    from nlptool import tokenizers

    if kind != "byte" and vocab_size is None:
        raise UsageError(f"--vocab-size is required for --kind {kind}.")
    try:
        return tokenizers.create(kind, vocab_size)
    except ValueError as error:
        raise UsageError(str(error).replace("argument `vocab_size`", "--vocab-size")) from None


def load_tokenizer(directory):
    from nlptool.tokenizers.files import load_tokenizer as load

    try:
        return load(directory)
    except FileNotFoundError:
        raise UsageError(f"{directory} holds no {TOKENIZER_FILE}; train one with `nlptool tokenizer train`.") from None


def tokenizer_train(args):
    texts = read_texts(args.input, args.column)
    tokenizer = make_tokenizer(args.kind, args.vocab_size).train(texts)
    from nlptool.tokenizers.files import save_tokenizer

    path = save_tokenizer(tokenizer, args.out)
    print(f"{args.kind} tokeniser, vocabulary size {tokenizer.vocabulary_size()}, trained on {len(texts):,} texts")
    print(f"wrote {path}")


def tokenizer_encode(args):
    tokenizer = load_tokenizer(args.directory)
    ids = tokenizer(args.text).numpy()
    for text, row in zip(args.text, ids):
        row = [int(i) for i in row if i != 0]
        pieces = [t.decode("utf-8", errors="replace") for t in tokenizer.detokenize([[i] for i in row]).numpy()]
        print(text)
        print("  tokens:", " ".join(pieces))
        print("  ids:   ", " ".join(str(i) for i in row))


# === Tasks ===

DATA_FILE = "data.json"  # how a run's data was given, so `evaluate RUN_DIR` can find its test set


def resolve_config(config_class, args):
    from nlptool import config as config_lib

    overrides = list(args.set or [])
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    try:
        return config_lib.resolve(config_class, args.config or [], overrides)
    except config_lib.ConfigError as error:
        raise UsageError(str(error)) from None


@contextlib.contextmanager
def new_run(run_dir, source):
    """The run directory, with `source` (how its data was given) in data.json.
    A new run that fails before its first backup is removed whole; later,
    it is kept, so that the same command resumes it."""
    import json
    import shutil

    run_dir = Path(run_dir)
    fresh = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DATA_FILE).write_text(json.dumps(source), encoding="utf-8")
    try:
        yield run_dir
    except BaseException:
        if fresh and not (run_dir / "backup").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def absolute(path):
    """`path` made absolute (None stays None), so that data.json works from any directory."""
    return str(Path(path).resolve()) if path else None


def run_source(run_dir):
    """What data.json says about a run (task, data); sentiment for runs that predate the task key."""
    import json

    path = Path(run_dir) / DATA_FILE
    source = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    source.setdefault("task", "sentiment")
    return source


def task_train(args):
    if args.task == "language-model":
        return train_language_model(args)
    if args.task == "translation":
        return train_translation(args)
    if args.source_lang or args.target_lang or args.source_column or args.target_column:
        raise UsageError("--source-lang, --target-lang, --source-column and --target-column are for translation runs.")
    return train_sentiment(args)


def train_sentiment(args):
    from nlptool.data import DatasetError
    from nlptool.data.csv import DataError
    from nlptool.tasks import sentiment_steps as steps
    from nlptool.tasks.sentiment import SentimentConfig

    config = resolve_config(SentimentConfig, args)
    seed, fraction = config.training.seed, config.training.validation_fraction
    if args.text_file:
        raise UsageError("--text-file is for language models; a sentiment run takes --dataset or --csv.")
    # read and check all the data before anything is written
    try:
        if args.dataset:
            source = {"task": "sentiment", "dataset": args.dataset, "data_dir": absolute(args.data_dir)}
            data = steps.dataset_data(args.dataset, seed, fraction, args.data_dir, args.max_train_examples)
        else:
            source = {
                "task": "sentiment",
                # resolved, so that `evaluate RUN_DIR` works from any directory
                "csv": absolute(args.test_csv),
                "text_column": args.text_column,
                "label_column": args.label_column,
            }
            data = steps.csv_data(
                args.csv,
                args.text_column,
                args.label_column,
                seed,
                fraction,
                args.validation_csv,
                args.test_csv,
                args.max_train_examples,
            )
    except (DataError, DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None
    with new_run(args.run_dir, source) as run_dir:
        try:
            steps.train(config, data, run_dir, init_from=args.init_from, init_encoder_from=args.init_encoder_from)
        except steps.RunError as error:
            raise UsageError(str(error)) from None
    if data.test is not None:
        print_metrics(steps.evaluate(run_dir, data.test))


def train_language_model(args):
    from nlptool.data import DatasetError
    from nlptool.tasks import language_model_steps as steps
    from nlptool.tasks.language_model import LanguageModelConfig

    if args.init_from or args.init_encoder_from or args.label_column:
        raise UsageError("--init-from, --init-encoder-from and --label-column are for sentiment runs.")
    config = resolve_config(LanguageModelConfig, args)
    try:
        if args.dataset:
            corpus = steps.dataset_corpus(args.dataset, args.data_dir, args.max_train_examples)
            source = {"task": "language-model", "dataset": args.dataset, "data_dir": absolute(args.data_dir)}
        else:
            if args.csv and not args.text_column:
                raise UsageError("--csv needs --text-column for a language model.")
            corpus = steps.text_corpus(
                args.text_file or args.csv, args.validation_file, args.test_file, column=args.text_column
            )
            if args.max_train_examples:
                corpus.train = corpus.train[: args.max_train_examples]
            source = {"task": "language-model", "test_file": absolute(args.test_file), "column": args.text_column}
    except (DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None
    with new_run(args.run_dir, source) as run_dir:
        steps.train(config, corpus, run_dir)
    if corpus.test is not None:
        print_lm_metrics(steps.evaluate(run_dir, corpus.test))


def translation_config(args):
    """The run's config; --source-lang/--target-lang, when given, override the config's pair."""
    from nlptool.tasks.translation import TranslationConfig

    for flag in ("source_lang", "target_lang"):
        if getattr(args, flag):
            args.set = [*(args.set or []), f"{flag}={getattr(args, flag)}"]
    return resolve_config(TranslationConfig, args)


def train_translation(args):
    from nlptool.data import DatasetError
    from nlptool.tasks import translation_steps as steps

    if args.init_from or args.init_encoder_from or args.label_column or args.text_column or args.text_file:
        raise UsageError("A translation run takes --dataset or --csv with --source-column and --target-column.")
    config = translation_config(args)
    try:
        if args.dataset:
            corpus = steps.dataset_corpus(
                args.dataset, config.source_lang, config.target_lang, args.data_dir, args.max_train_examples
            )
            source = {"task": "translation", "dataset": args.dataset, "data_dir": absolute(args.data_dir)}
        else:
            if not (args.source_column and args.target_column):
                raise UsageError("--csv needs --source-column and --target-column for a translation run.")
            corpus = steps.csv_corpus(
                args.csv,
                args.source_column,
                args.target_column,
                args.validation_csv,
                args.test_csv,
                seed=config.training.seed,
            )
            if args.max_train_examples:
                corpus.train = corpus.train.iloc[: args.max_train_examples]
            source = {
                "task": "translation",
                "csv": absolute(args.test_csv),
                "source_column": args.source_column,
                "target_column": args.target_column,
            }
    except (DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None
    with new_run(args.run_dir, source) as run_dir:
        try:
            steps.train(config, corpus, run_dir)
        except steps.RunError as error:
            raise UsageError(str(error)) from None
    if corpus.test is not None:
        print_translation_metrics(steps.evaluate(run_dir, corpus.test))


def print_translation_metrics(metrics):
    beam, greedy = metrics["beam"], metrics["greedy"]
    print(
        f"{metrics['split']}: {metrics['pairs']:,} pairs, perplexity {metrics['perplexity']:.2f}, "
        f"BLEU {beam['bleu']:.2f} / chrF {beam['chrf']:.2f} (beam {beam['beam_width']}), "
        f"BLEU {greedy['bleu']:.2f} / chrF {greedy['chrf']:.2f} (greedy)"
    )


def print_lm_metrics(metrics):
    extra = "".join(
        f", {name.replace('_', ' ')} {metrics[name]:.4f}"
        for name in ("bits_per_character", "bits_per_byte", "word_perplexity")
        if name in metrics
    )
    print(f"{metrics['split']}: {metrics['tokens']:,} tokens, perplexity {metrics['perplexity']:.2f}{extra}")


def print_metrics(metrics):
    print(
        f"{metrics['split']}: {metrics['examples']:,} examples, accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['macro_f1']:.4f}"
    )


def task_evaluate(args):
    task = run_source(args.run_dir)["task"]
    if task == "language-model":
        return evaluate_language_model(args)
    if task == "translation":
        return evaluate_translation(args)
    return evaluate_sentiment(args)


def evaluate_translation(args):
    import pandas as pd

    from nlptool.data import DatasetError, datasets
    from nlptool.data.csv import DataError, read_parallel_csv
    from nlptool.tasks import translation_steps as steps

    source = run_source(args.run_dir)
    try:
        config = steps.load_config(args.run_dir)
        if args.csv or (not args.dataset and source.get("csv")):
            split = args.csv or source["csv"]
            columns = (
                args.source_column or source.get("source_column"),
                args.target_column or source.get("target_column"),
            )
            if None in columns:
                raise UsageError("--csv needs --source-column and --target-column for a translation run.")
            pairs = read_parallel_csv(split, *columns)
        elif args.dataset or source.get("dataset"):
            name = args.dataset or source["dataset"]
            split = args.split or datasets.get(name).splits[-1]
            frame = datasets.load(name, split, data_dir=args.data_dir or source.get("data_dir"))
            missing = [lang for lang in (config.source_lang, config.target_lang) if lang not in frame.columns]
            if missing:
                raise UsageError(f"{name} has no {missing} text; its languages are {list(frame.columns)}.")
            pairs = pd.DataFrame({"source": frame[config.source_lang], "target": frame[config.target_lang]})
        else:
            raise UsageError("Name the pairs to evaluate on: --dataset NAME [--split S] or --csv FILE.")
        print_translation_metrics(steps.evaluate(args.run_dir, pairs, split, beam_width=args.beam_width))
    except (DataError, DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None


def evaluate_language_model(args):
    from nlptool.data import DatasetError, datasets
    from nlptool.data.csv import DataError
    from nlptool.data.text import read_lines
    from nlptool.tasks import language_model_steps as steps

    source = run_source(args.run_dir)
    try:
        if args.text_file or args.csv:
            split = args.text_file or args.csv
            lines = read_lines(split, args.text_column if args.csv else None)
        elif args.dataset or source.get("dataset"):
            name = args.dataset or source["dataset"]
            split = args.split or "test"
            if split not in steps.LM_SPLITS:
                raise UsageError(f"A language-model corpus has the splits {list(steps.LM_SPLITS)}, not {split!r}.")
            lines = datasets.load(name, split, data_dir=args.data_dir or source.get("data_dir"))["text"].tolist()
        elif source.get("test_file"):
            split = source["test_file"]
            lines = read_lines(split, source.get("column"))
        else:
            raise UsageError("Name the text to evaluate on: --dataset NAME, --text-file FILE or --csv FILE.")
        print_lm_metrics(steps.evaluate(args.run_dir, lines, split))
    except (DataError, DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None


def evaluate_sentiment(args):
    import json

    from nlptool.data import DatasetError, datasets
    from nlptool.data.csv import DataError, read_labeled_csv
    from nlptool.tasks import sentiment_steps as steps

    run_dir = Path(args.run_dir)
    try:
        if args.csv:
            frame, split = read_labeled_csv(args.csv, args.text_column, args.label_column, min_classes=1), args.csv
        else:
            dataset, data_dir = args.dataset, args.data_dir
            if dataset is None and (run_dir / DATA_FILE).is_file():
                source = json.loads((run_dir / DATA_FILE).read_text(encoding="utf-8"))
                if source.get("csv"):
                    frame = read_labeled_csv(
                        source["csv"], source["text_column"], source["label_column"], min_classes=1
                    )
                    return print_metrics(steps.evaluate(run_dir, frame, source["csv"]))
                dataset, data_dir = source.get("dataset"), data_dir or source.get("data_dir")
            if dataset is None:
                raise UsageError("Name the data to evaluate on: --dataset NAME or --csv FILE.")
            split = args.split or steps.TEST_SPLITS.get(dataset, "test")
            frame = datasets.load(dataset, split, data_dir=data_dir)
            frame = frame.assign(label=frame["label"].map(datasets.get(dataset).label_names))
        print_metrics(steps.evaluate(run_dir, frame, split))
    except (DataError, DatasetError, steps.RunError) as error:
        raise UsageError(str(error)) from None


def task_export(args):
    from nlptool.export import ExportError

    task = run_source(args.run_dir)["task"]
    if task == "language-model":
        from nlptool.tasks import language_model_steps as steps

        signatures = "serving_default, generate, beam_search, generation_defaults"
    elif task == "translation":
        from nlptool.tasks import translation_steps as steps

        signatures = "serving_default, beam_search, greedy, attention, decoding_defaults"
    else:
        from nlptool.tasks import sentiment_steps as steps

        signatures = "serving_default, class_names"
    try:
        path = steps.export(args.run_dir, args.out, overwrite=args.overwrite)
    except (ExportError, steps.RunError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {path} (signatures: {signatures})")


def task_predict(args):
    from nlptool.tasks import sentiment_steps as steps

    try:
        results = steps.predict(args.path, args.text)
    except steps.RunError as error:
        raise UsageError(str(error)) from None
    for text, (label, probability) in zip(args.text, results):
        print(f"{label}\t{probability:.4f}\t{text}")


def task_generate(args):
    from nlptool.tasks import language_model_steps as steps

    try:
        texts = steps.generate(
            args.path,
            args.prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            beam_width=args.beam_width,
        )
    except steps.RunError as error:
        raise UsageError(str(error)) from None
    for prompt, text in zip(args.prompt, texts):
        print(f"{prompt}\t{text}")


def task_translate(args):
    from nlptool.tasks import translation_steps as steps

    try:
        translator = steps.Translator(args.path)
        results = translator.translate(args.text, beam_width=args.beam_width, n_best=args.n_best, greedy=args.greedy)
        for text, hypotheses in zip(args.text, results):
            for translation, score in hypotheses:
                print(f"{score:.4f}\t{translation}\t{text}" if args.n_best > 1 else f"{translation}\t{text}")
        if args.plot_attention:
            if len(args.text) != 1:
                raise UsageError("--plot-attention draws one sentence; pass a single TEXT.")
            steps.plot_attention(translator, args.text[0], args.plot_attention, target=results[0][0][0])
            print(f"wrote {args.plot_attention}")
    except steps.RunError as error:
        raise UsageError(str(error)) from None


def build_parser():
    parser = argparse.ArgumentParser(prog="nlptool", description="NLP on GRUs with Keras and TensorFlow.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a task model into a run directory")
    train.add_argument("task", choices=["sentiment", "language-model", "translation"])
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset",
        help="a registered dataset: imdb, sst2 (sentiment); ptb, wikitext2, tiny_shakespeare (language model); "
        "multi30k, spa_eng (translation)",
    )
    source.add_argument("--csv", help="your training CSV")
    source.add_argument("--text-file", help="language model: your training text, one line a row")
    train.add_argument("--text-column", help="the CSV column holding the text")
    train.add_argument("--label-column", help="the CSV column holding the label")
    train.add_argument("--source-lang", help="translation: the source language of --dataset (e.g. de)")
    train.add_argument("--target-lang", help="translation: the target language of --dataset (e.g. en)")
    train.add_argument("--source-column", help="translation: the CSV column holding the source text")
    train.add_argument("--target-column", help="translation: the CSV column holding the translation")
    train.add_argument("--validation-csv", help="validation CSV (default: a stratified share of --csv)")
    train.add_argument("--test-csv", help="test CSV, evaluated after training")
    train.add_argument("--validation-file", help="language model: validation text (default: the last 5%% of lines)")
    train.add_argument("--test-file", help="language model: test text, evaluated after training")
    train.add_argument("--config", action="append", help="YAML config; several merge, the last wins")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    train.add_argument("--epochs", type=int, help="shorthand for --set training.epochs=N")
    train.add_argument("--max-train-examples", type=int, help="train on the first N training examples")
    train.add_argument("--data-dir", help="where datasets are looked for first")
    train.add_argument("--init-from", help="start from this run's tokeniser and weights (fine-tuning)")
    train.add_argument(
        "--init-encoder-from",
        help="sentiment: start from this language-model run's tokeniser, embedding and GRU layers",
    )
    train.add_argument("--run-dir", required=True)
    train.set_defaults(run=task_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a run; prints and writes RUN_DIR/metrics.json")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--dataset")
    evaluate.add_argument("--split")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--csv")
    evaluate.add_argument("--text-file", help="language model: a text file, one line a row")
    evaluate.add_argument("--text-column", default="text")
    evaluate.add_argument("--label-column", default="label")
    evaluate.add_argument("--source-column", help="translation: the CSV column holding the source text")
    evaluate.add_argument("--target-column", help="translation: the CSV column holding the reference")
    evaluate.add_argument("--beam-width", type=int, help="translation: beam width (default: the run's config)")
    evaluate.set_defaults(run=task_evaluate)

    export = commands.add_parser("export", help="write the string-in SavedModel of a run")
    export.add_argument("run_dir")
    export.add_argument("out")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    export.set_defaults(run=task_export)

    predict = commands.add_parser("predict", help="classify texts with a run or an export")
    predict.add_argument("path", help="a run directory or an exported SavedModel")
    predict.add_argument("text", nargs="+")
    predict.set_defaults(run=task_predict)

    generate = commands.add_parser("generate", help="continue prompts with a language-model run or export")
    generate.add_argument("path", help="a run directory or an exported SavedModel")
    generate.add_argument("prompt", nargs="+")
    generate.add_argument("--max-new-tokens", type=int, help="tokens to add (default: the run's config)")
    generate.add_argument("--temperature", type=float, help="sampling temperature; 0 is greedy")
    generate.add_argument("--top-k", type=int, help="sample among the k most probable tokens (0: all)")
    generate.add_argument("--top-p", type=float, help="sample within this probability mass (1: all)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same text")
    generate.add_argument("--beam-width", type=int, help="beam search with this many beams instead of sampling")
    generate.set_defaults(run=task_generate)

    translate = commands.add_parser("translate", help="translate sentences with a translation run or export")
    translate.add_argument("path", help="a run directory or an exported SavedModel")
    translate.add_argument("text", nargs="+")
    translate.add_argument("--beam-width", type=int, help="beams per sentence (default: the run's config)")
    translate.add_argument("--n-best", type=int, default=1, help="translations per sentence, with scores")
    translate.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
    translate.add_argument("--plot-attention", metavar="FILE.png", help="draw the attention of the translation")
    translate.set_defaults(run=task_translate)

    tokenizer = commands.add_parser("tokenizer", help="train and try tokenisers")
    actions = tokenizer.add_subparsers(dest="action", required=True)

    train = actions.add_parser("train", help="train a tokeniser and save it to a directory")
    train.add_argument("--kind", choices=KINDS, required=True)
    train.add_argument("--vocab-size", type=int, help="vocabulary size, reserved ids included (not for byte)")
    train.add_argument("--input", required=True, help="a text file (one example a line) or a CSV with --column")
    train.add_argument("--column", help="the CSV column holding the text")
    train.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    train.set_defaults(run=tokenizer_train)

    encode = actions.add_parser("encode", help="print the tokens and ids of some text")
    encode.add_argument("directory", help="a directory written by `nlptool tokenizer train`")
    encode.add_argument("text", nargs="+")
    encode.set_defaults(run=tokenizer_encode)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # progress of long jobs (tokeniser training reads, ...) goes to stderr
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nlptool").setLevel(logging.INFO)
    if (
        getattr(args, "csv", None)
        and args.command == "train"
        and args.task == "sentiment"
        and not (args.text_column and args.label_column)
    ):
        print("nlptool: error: --csv needs --text-column and --label-column", file=sys.stderr)
        return 2
    try:
        args.run(args)
    except UsageError as error:
        print(f"nlptool: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
