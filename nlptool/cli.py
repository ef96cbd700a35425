"""The `nlptool` command line, generic over the task registry.

    nlptool train TASK (--dataset NAME | --train-file FILE) [--validation-file F] [--test-file F]
                       [--config NAME|FILE.yaml ...] [--set KEY=VALUE ...] --run-dir DIR [--overwrite] [task options]
    nlptool evaluate RUN_DIR [--dataset NAME [--split S] | --test-file FILE] [task options]
    nlptool export RUN_DIR [OUT] [--version N] [--overwrite]
    nlptool predict RUN_DIR_OR_EXPORT (TEXT ... | --input FILE | -) [task options]
    nlptool generate | translate ...     the task-named spellings of predict
    nlptool serve EXPORT [--port 8501] [--host 127.0.0.1] [limits]   TF Serving's REST API over HTTP
    nlptool configs [TASK]               the shipped configs (`--config NAME`)
    nlptool datasets                     the registered datasets
    nlptool presets                      the pre-trained starting points (`--init-from preset:NAME`)
    nlptool tokenizer train | encode     train and try a tokeniser on its own

`nlptool train TASK --help` and `nlptool predict PATH --help` show the
options of that task. Parsers are built from the task classes, whose
modules import no TensorFlow, so `--help` answers at once; TensorFlow is
imported (with its start-up messages silenced unless --verbose) when a
command needs it.
"""

import argparse
import contextlib
import json
import logging
import os
import sys

from nlptool import tasks
from nlptool.errors import NlptoolError, UsageError

TOKENIZER_KINDS = ("word", "char", "byte", "wordpiece", "sentencepiece")


# === TensorFlow, quietly ===


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 sent to /dev/null: TensorFlow's C++ start-up lines
    (oneDNN, CUDA probing) are written there before any Python setting can stop them."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_tensorflow(verbose):
    """Import TensorFlow and Keras; without `verbose`, silently."""
    if verbose:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device probing prints its own lines: have them now
        import keras  # noqa: F401
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default when it has a meaningful one and its help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
            return text
        return f"{text} (default: {default})"


def parse_delimiter_option(text):
    """The delimiter that `--delimiter TEXT` names: "tab" and a written "\\t" are a tab."""
    return "\t" if text in ("tab", "\\t") else text


# === train ===


def add_config_arguments(parser):
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME|FILE.yaml",
        help="a shipped config (see `nlptool configs`) or a YAML file; several merge, the last wins",
    )
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    group.add_argument("--epochs", type=int, help="shorthand for --set training.epochs=N")
    group.add_argument(
        "--distribution",
        choices=("none", "mirrored", "multi-worker"),
        help="train on one device, every GPU of this machine, or the hosts of TF_CONFIG "
        "(shorthand for --set training.distribution=...)",
    )


def add_column_arguments(group, task, defaults=True):
    for role, help_text in task.columns.items():
        default = role if defaults else None
        shown = "" if defaults else " (default: the run's)"
        group.add_argument(f"--{role}-column", default=default, metavar="NAME", help=help_text + shown)


def add_data_arguments(parser, task):
    group = parser.add_argument_group("data (a registered dataset or your files: CSV, TSV or JSON Lines)")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="NAME", help=f"a registered {task.name} dataset (see `nlptool datasets`)")
    source.add_argument("--train-file", metavar="FILE", help="your training data")
    group.add_argument(
        "--validation-file", metavar="FILE", help="validation data (default: a share of the training data)"
    )
    group.add_argument("--test-file", metavar="FILE", help="test data, evaluated after training")
    group.add_argument(
        "--delimiter",
        type=parse_delimiter_option,
        help="field delimiter of CSV/TSV files ('tab' for a tab; default: from the extension)",
    )
    add_column_arguments(group, task)
    group.add_argument(
        "--data-dir", metavar="DIR", help="where datasets are looked for first (default: NLPTOOL_DATA_DIR)"
    )
    group.add_argument("--max-train-examples", type=int, metavar="N", help="train on the first N training examples")


def data_source(args, task):
    from nlptool.tasks.base import DataSource

    columns = {role: getattr(args, f"{role}_column") for role in task.columns}
    return DataSource(
        dataset=args.dataset,
        data_dir=args.data_dir,
        train_file=args.train_file,
        validation_file=args.validation_file,
        test_file=args.test_file,
        columns={} if args.dataset else columns,
        delimiter=args.delimiter,
        max_train_examples=args.max_train_examples,
    )


def resolve_config(task, args):
    from nlptool import config as config_lib
    from nlptool import configs

    overrides = list(args.set)
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.distribution is not None:
        overrides.append(f"training.distribution={args.distribution}")
    files = [configs.find(name, task.name) for name in args.config]
    return task.configure(config_lib.resolve(task.config_class, files, overrides), args)


def command_train(args):
    from nlptool import runs

    task = tasks.get(args.task)
    config = resolve_config(task, args)
    source = data_source(args, task)
    start_tensorflow(args.verbose)
    run = runs.train(task, config, source, args.run_dir, options=task.train_options(args), overwrite=args.overwrite)
    if run is not None and run.metrics is not None:  # None: a worker other than the chief
        print(task.summary(run.metrics))
        print(f"wrote {run.path / runs.METRICS_FILE}")


# === evaluate, export, predict ===


def open_path(path, verbose, runs_only=False):
    from nlptool import runs

    start_tensorflow(verbose)
    if runs_only:
        return runs.Run.open(path)
    return runs.load(path)


def command_evaluate(args):
    from nlptool import runs

    run = runs.Run.open(args.run_dir)  # the task decides the options
    task = run.task
    parser = argparse.ArgumentParser(
        prog=f"nlptool evaluate {args.run_dir}",
        description=f"Evaluate a {task.name} run; writes metrics.json.",
        formatter_class=HelpFormatter,
    )
    group = parser.add_argument_group("data (default: the run's own test data)")
    group.add_argument("--dataset", metavar="NAME", help="a registered dataset")
    group.add_argument("--split", help="a split of the dataset (default: its test split)")
    group.add_argument("--data-dir", metavar="DIR", help="where datasets are looked for first")
    group.add_argument("--test-file", metavar="FILE", help="a file to evaluate on (CSV, TSV, JSON Lines)")
    group.add_argument(
        "--delimiter",
        type=parse_delimiter_option,
        help="field delimiter of a CSV/TSV file ('tab' for a tab; default: from the extension)",
    )
    add_column_arguments(group, task, defaults=False)
    task.add_evaluate_arguments(parser)
    options = parser.parse_args(args.rest)
    columns = {role: getattr(options, f"{role}_column") for role in task.columns if getattr(options, f"{role}_column")}
    start_tensorflow(args.verbose)
    metrics = run.evaluate(
        split=options.split,
        dataset=options.dataset,
        test_file=options.test_file,
        columns=columns,
        delimiter=options.delimiter,
        data_dir=options.data_dir,
        **task.evaluate_options(options),
    )
    print(task.summary(metrics))
    print(f"wrote {run.path / runs.METRICS_FILE}")


def command_export(args):
    run = open_path(args.run_dir, args.verbose, runs_only=True)
    path = run.export(args.out, version=args.version, overwrite=args.overwrite)
    print(f"wrote {path} (signatures: {', '.join(run.task.signatures)})")


def command_serve(args):
    from nlptool import server

    start_tensorflow(args.verbose)
    limits = server.Limits(
        max_request_bytes=args.max_request_bytes,
        max_rows=args.max_rows,
        max_text_length=args.max_text_length,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
    )
    server.serve(args.export, host=args.host, port=args.port, name=args.model_name, limits=limits)


def read_inputs(texts, input_file, column):
    """The texts to predict on: arguments, a file (one a line, or a column of a table), or standard input."""
    from nlptool.data import read_lines

    if input_file and texts:
        raise UsageError("Give texts as arguments or with --input, not both.")
    if input_file == "-" or texts == ["-"]:
        lines = sys.stdin.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line.removesuffix("\r") for line in lines]
    if input_file:
        return read_lines(input_file, column, name="--column")
    if not texts:
        raise UsageError("Nothing to predict: pass texts, --input FILE, or - to read standard input.")
    return texts


def command_predict(args):
    from nlptool import runs

    task, kind = runs.task_of(args.path)  # from run.json or the export's record: no TensorFlow yet
    if args.command != "predict" and task.command != args.command:
        expected = next((tasks.get(n).name for n in tasks.names() if tasks.get(n).command == args.command), "?")
        raise UsageError(
            f"{args.path} is a {task.name} {kind}; `nlptool {args.command}` is for {expected} runs and exports. "
            f"Use `nlptool predict {args.path} ...`."
        )
    parser = argparse.ArgumentParser(
        prog=f"nlptool {args.command} {args.path}",
        description=f"Predict with a {task.name} {kind}.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("text", nargs="*", help="texts to predict on; - reads standard input, one text a line")
    parser.add_argument(
        "--input", metavar="FILE", help="a file of texts: one a line, or a column of a table (--column)"
    )
    parser.add_argument("--column", help="the column of --input's table holding the texts")
    parser.add_argument("--json", action="store_true", help="print one JSON object a line instead of text")
    task.add_predict_arguments(parser)
    options = parser.parse_args(args.rest)
    texts = read_inputs(options.text, options.input, options.column)
    loaded = open_path(args.path, args.verbose)
    rows = loaded.predict(texts, **task.predict_options(options))
    for text, row in zip(texts, rows):
        print(
            json.dumps({"input": text, **row}, ensure_ascii=False)
            if options.json
            else task.format_prediction(text, row)
        )


def command_configs(args):
    from nlptool import configs

    for config in configs.shipped(args.task):
        print(f"{config.task:15s} {config.name:18s} {config.summary}")


def command_presets(args):
    from nlptool import presets

    rows = [presets.get(name).describe() for name in presets.names()]
    width = max([len("--init-from")] + [len(presets.PREFIX + row["name"]) for row in rows])
    print(
        f"{'--init-from':{width}s} {'version':>7s} {'parameters':>10s} {'MB':>5s} {'words':>6s} {'val ppl':>7s}  corpus"
    )
    for row in rows:
        print(
            f"{presets.PREFIX + row['name']:{width}s} {row['version']:7d} {row['parameters']:10,d} "
            f"{row['size_mb']:5.1f} {row['vocabulary']:6,d} {row['validation_perplexity']:7.1f}  {row['corpus']}"
        )
        print(f"{'':{width}s} language models: {row['directions']}; data licences: {row['licences']}")


def command_datasets(args):
    from nlptool.data import datasets

    for name, dataset in datasets.REGISTRY.items():
        print(f"{name:18s} {dataset.task:15s} splits: {', '.join(dataset.files)}")


# === tokenizer ===


def command_tokenizer_train(args):
    from nlptool import tokenizers
    from nlptool.data import read_lines
    from nlptool.tokenizers.files import save_tokenizer

    texts = read_lines(args.input, args.column, name="--column")
    if args.kind != "byte" and args.vocab_size is None:
        raise UsageError(f"--vocab-size is required for --kind {args.kind}.")
    start_tensorflow(args.verbose)
    try:
        tokenizer = tokenizers.create(args.kind, args.vocab_size)
    except ValueError as error:
        raise UsageError(str(error).replace("argument `vocab_size`", "--vocab-size")) from None
    tokenizer = tokenizer.train(texts)
    path = save_tokenizer(tokenizer, args.out)
    print(f"{args.kind} tokeniser, vocabulary size {tokenizer.vocabulary_size()}, trained on {len(texts):,} texts")
    print(f"wrote {path}")


def load_tokenizer(directory):
    from nlptool.tokenizers.files import TOKENIZER_FILE
    from nlptool.tokenizers.files import load_tokenizer as load

    try:
        return load(directory)
    except FileNotFoundError:
        raise UsageError(f"{directory} holds no {TOKENIZER_FILE}; train one with `nlptool tokenizer train`.") from None


def command_tokenizer_encode(args):
    start_tensorflow(args.verbose)
    tokenizer = load_tokenizer(args.directory)
    ids = tokenizer(args.text).numpy()
    for text, row in zip(args.text, ids):
        row = [int(i) for i in row if i != 0]
        pieces = [t.decode("utf-8", errors="replace") for t in tokenizer.detokenize([[i] for i in row]).numpy()]
        print(text)
        print("  tokens:", " ".join(pieces))
        print("  ids:   ", " ".join(str(i) for i in row))


# === the parser ===


def _version():
    from nlptool import __version__

    return __version__


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show TensorFlow's own messages"
    )
    parser = argparse.ArgumentParser(
        prog="nlptool", description="NLP on GRUs with Keras and TensorFlow.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"nlptool {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a task's model into a run directory", parents=[common])
    task_parsers = train.add_subparsers(dest="task", required=True, metavar="TASK")
    for name in tasks.names():
        task = tasks.get(name)
        sub = task_parsers.add_parser(
            name,
            help=task.description,
            description=f"Train a {name} model: {task.description}.",
            parents=[common],
            formatter_class=HelpFormatter,
        )
        add_data_arguments(sub, task)
        add_config_arguments(sub)
        run = sub.add_argument_group("run")
        run.add_argument("--run-dir", required=True, metavar="DIR", help="the run directory to create (or resume)")
        run.add_argument(
            "--overwrite", action="store_true", help="start afresh in a run directory that holds another run"
        )
        own = sub.add_argument_group(f"{name} options")
        task.add_train_arguments(own)
        sub.set_defaults(handler=command_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a run; prints and writes RUN_DIR/metrics.json",
        description="Evaluate a run. `nlptool evaluate RUN_DIR --help` shows the options of its task.",
        parents=[common],
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument("rest", nargs=argparse.REMAINDER, help="the options of the run's task")
    evaluate.set_defaults(handler=command_evaluate)

    export = commands.add_parser("export", help="write the string-in SavedModel of a run", parents=[common])
    export.add_argument("run_dir")
    export.add_argument(
        "out", nargs="?", help="the model folder to write a numbered version into (default: RUN_DIR/export)"
    )
    export.add_argument(
        "--version", type=int, metavar="N", help="the version number (default: one above the highest in OUT)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace the version given with --version")
    export.set_defaults(handler=command_export)

    spellings = {"predict": "predict with a run or an export (any task)"}
    for name in tasks.names():
        command = tasks.get(name).command
        if command:
            spellings[command] = f"predict with a {name} run or export"
    for command, help_text in spellings.items():
        predict = commands.add_parser(
            command,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. `nlptool {command} PATH --help` shows its options.",
            parents=[common],
        )
        predict.add_argument("path", help="a run directory or an exported SavedModel")
        predict.add_argument("rest", nargs=argparse.REMAINDER, help="texts and the options of the task")
        predict.set_defaults(handler=command_predict)

    serve = commands.add_parser(
        "serve",
        help="serve an export over HTTP with TF Serving's REST API",
        description="Serve an export (its highest version) over HTTP with TF Serving's REST API: "
        "GET /v1/models/NAME[/metadata], POST /v1/models/NAME:predict. One log line per request.",
        parents=[common],
        formatter_class=HelpFormatter,
    )
    serve.add_argument("export", help="an export: a model folder of numbered versions, or one SavedModel")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8501, help="the port (TF Serving's REST port by default)")
    serve.add_argument("--model-name", help="NAME in the URLs (default: the export's task, e.g. sentiment)")
    limits = serve.add_argument_group("limits and batching")
    defaults = _server_defaults()
    limits.add_argument("--max-request-bytes", type=int, default=defaults["max_request_bytes"], metavar="N")
    limits.add_argument(
        "--max-rows", type=int, default=defaults["max_rows"], metavar="N", help="rows (texts) of one request"
    )
    limits.add_argument(
        "--max-text-length", type=int, default=defaults["max_text_length"], metavar="N", help="characters of one text"
    )
    limits.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults["max_batch_size"],
        metavar="N",
        help="rows of concurrent requests merged into one model call (1: no merging)",
    )
    limits.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=defaults["batch_timeout_ms"],
        metavar="MS",
        help="how long a call waits for more requests (0: it takes those that arrived while the model was busy)",
    )
    serve.set_defaults(handler=command_serve)

    shipped = commands.add_parser(
        "configs",
        help="list the shipped configs (`--config NAME`)",
        description="List the configs nlptool ships: `nlptool train TASK --config NAME` uses one.",
        parents=[common],
    )
    shipped.add_argument("task", nargs="?", choices=tasks.names(), help="only this task's configs")
    shipped.set_defaults(handler=command_configs)

    listed = commands.add_parser(
        "presets",
        help="list the pre-trained starting points (`--init-from preset:NAME`)",
        description="List the presets: pre-trained language models a task starts from with --init-from preset:NAME.",
        parents=[common],
    )
    listed.set_defaults(handler=command_presets)

    datasets = commands.add_parser("datasets", help="list the registered datasets", parents=[common])
    datasets.set_defaults(handler=command_datasets)

    tokenizer = commands.add_parser("tokenizer", help="train and try tokenisers", parents=[common])
    actions = tokenizer.add_subparsers(dest="action", required=True)
    train_tokenizer = actions.add_parser("train", help="train a tokeniser and save it to a directory", parents=[common])
    train_tokenizer.add_argument("--kind", choices=TOKENIZER_KINDS, required=True)
    train_tokenizer.add_argument("--vocab-size", type=int, help="vocabulary size, reserved ids included (not for byte)")
    train_tokenizer.add_argument(
        "--input", required=True, help="a text file (one example a line) or a table with --column"
    )
    train_tokenizer.add_argument("--column", help="the column of --input's table holding the text")
    train_tokenizer.add_argument("--out", required=True, help="directory to write tokenizer.json into")
    train_tokenizer.set_defaults(handler=command_tokenizer_train)
    encode = actions.add_parser("encode", help="print the tokens and ids of some text", parents=[common])
    encode.add_argument("directory", help="a directory written by `nlptool tokenizer train`")
    encode.add_argument("text", nargs="+")
    encode.set_defaults(handler=command_tokenizer_encode)
    return parser


def _server_defaults():
    from dataclasses import fields

    from nlptool.server import Limits  # no TensorFlow at import

    return {field.name: field.default for field in fields(Limits)}


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    # progress of long steps (tokeniser training, ...) goes to stderr
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nlptool").setLevel(logging.INFO)
    try:
        args.handler(args)
    except NlptoolError as error:
        print(f"nlptool: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nlptool: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
