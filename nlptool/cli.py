"""The `nlptool` command line.

nlptool tokenizer train --kind {word,char,byte,wordpiece,sentencepiece} [--vocab-size N]
                        --input FILE [--column NAME] --out DIR
nlptool tokenizer encode DIR TEXT...
"""

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"
KINDS = ("word", "char", "byte", "wordpiece", "sentencepiece")


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def read_texts(path, column=None):
    """One example per line of a text file, or a CSV column with `column`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"Input file {path} does not exist.")
    if column is None:
        try:
            texts = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise UsageError(f"{path} is not UTF-8 text (byte {error.start}); pass a UTF-8 file.") from None
    else:
        import pandas as pd

        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise UsageError(f"Cannot read {path} as CSV: {error}") from None
        if column not in frame.columns:
            raise UsageError(f"{path} has no column {column!r}; its columns are {list(frame.columns)}.")
        texts = frame[column].tolist()
    if not any(text.strip() for text in texts):
        raise UsageError(f"{path} holds no text to train on.")
    return texts


def make_tokenizer(kind, vocab_size):
    from nlptool import tokenizers

    if kind == "byte":
        return tokenizers.ByteTokenizer()
    if vocab_size is None:
        raise UsageError(f"--vocab-size is required for --kind {kind}.")
    if vocab_size <= len(tokenizers.RESERVED_TOKENS):
        raise UsageError(f"--vocab-size must be above {len(tokenizers.RESERVED_TOKENS)}, got {vocab_size}.")
    if kind == "word":
        return tokenizers.WordTokenizer(max_size=vocab_size - len(tokenizers.RESERVED_TOKENS))
    if kind == "char":
        return tokenizers.CharTokenizer(max_size=vocab_size - len(tokenizers.RESERVED_TOKENS))
    if kind == "wordpiece":
        return tokenizers.WordPieceTokenizer(vocab_size=vocab_size)
    return tokenizers.SentencePieceTokenizer(vocab_size=vocab_size)


def save_tokenizer(tokenizer, out_dir):
    """Write DIR/tokenizer.json atomically: a reader never sees half a file."""
    import keras

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(keras.saving.serialize_keras_object(tokenizer), ensure_ascii=False)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=out_dir, delete=False, suffix=".tmp") as handle:
        handle.write(payload)
    os.replace(handle.name, out_dir / TOKENIZER_FILE)
    return out_dir / TOKENIZER_FILE


def load_tokenizer(directory):
    import keras

    from nlptool import tokenizers

    # the subword tokenisers are imported lazily; touching them registers them with Keras
    tokenizers.SentencePieceTokenizer, tokenizers.WordPieceTokenizer  # noqa: B018

    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise UsageError(f"{directory} holds no {TOKENIZER_FILE}; train one with `nlptool tokenizer train`.")
    return keras.saving.deserialize_keras_object(json.loads(path.read_text(encoding="utf-8")))


def tokenizer_train(args):
    texts = read_texts(args.input, args.column)
    tokenizer = make_tokenizer(args.kind, args.vocab_size).train(texts)
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


def build_parser():
    parser = argparse.ArgumentParser(prog="nlptool", description="NLP on GRUs with Keras and TensorFlow.")
    commands = parser.add_subparsers(dest="command", required=True)
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
    try:
        args.run(args)
    except UsageError as error:
        print(f"nlptool: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
