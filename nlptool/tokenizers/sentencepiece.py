"""SentencePiece tokeniser: a unigram or BPE model learnt with the
`sentencepiece` library, run in the graph by tensorflow-text."""

import base64
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import keras
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2

from nlptool.tokenizers.base import (
    END_ID,
    PAD_ID,
    RESERVED_TOKENS,
    START_ID,
    UNK_ID,
    Tokenizer,
    TrainingTexts,
    iterate_texts,
)

logger = logging.getLogger(__name__)

MODEL_TYPES = ("unigram", "bpe")
LOG_EVERY = 100_000  # sentences between progress messages while reading the corpus


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# tensorflow-text has two SentencePiece ops. `FastSentencepieceTokenizer`
# gives exactly the `sentencepiece` library's ids for unigram models (all of
# 10,000 IMDB reviews, where the other op differs on 2) but not for BPE
# models, and one op runs on one thread: a batch is cut into SHARDS parts,
# each tokenised by its own op, which the graph's inter-op threads run at
# once. SHARDS is fixed when the graph is traced (an export keeps the count
# of the machine that made it); a part may be empty. BPE models keep
# `SentencepieceTokenizer`, which spreads one batch over the threads itself.
# Figures: docs/benchmarks.md, "Tokenisers".
SHARDS = max(1, min(8, _cpu_count()))


def _as_proto_bytes(model_proto: bytes | bytearray | str) -> bytes:
    if isinstance(model_proto, (bytes, bytearray)):
        return bytes(model_proto)
    if isinstance(model_proto, str):
        try:
            return base64.b64decode(model_proto.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError) as error:
            raise ValueError(
                "Received an invalid value for argument `model_proto`, expected the serialized "
                "SentencePiece model as bytes or a base64 string."
            ) from error
    raise ValueError(
        "Received an invalid value for argument `model_proto`, expected bytes, a base64 string or None, "
        f"got {type(model_proto).__name__}."
    )


@keras.saving.register_keras_serializable(package="nlptool")
class SentencePieceTokenizer(Tokenizer):
    """Subword pieces from a SentencePiece model (unigram or BPE).

    `train` learns the model with the `sentencepiece` library; the serialized
    model proto is the tokeniser's whole state. In the graph it runs with
    tensorflow-text's ops (`FastSentencepieceTokenizer` for unigram models,
    `SentencepieceTokenizer` for BPE ones), so a SavedModel needs the
    tensorflow-text ops but not nlptool. The proto travels base64-encoded in
    the config under "model_proto".

    The reserved ids are SentencePiece's own special pieces: 0 <pad>,
    1 <unk>, 2 <s>, 3 </s>. <s> and </s> are control symbols, never produced
    from text (the text "<s>" is split into ordinary pieces); `add_start` /
    `add_end` add them. `user_defined_symbols` follow from id 4 and always
    come out as single pieces.

    Normalisation is SentencePiece's default "nmt_nfkc": NFKC, plus leading,
    trailing and repeated whitespace removed. A round trip
    `detokenize(tokenizer(s))` therefore gives back `s` exactly when `s` is
    NFKC-normalised, has single spaces and only characters covered by the
    model (others decode as " ⁇ ").

    Training is deterministic for a given `seed` (one thread, fixed random
    generator seed). If the corpus cannot fill `vocab_size`, the model is
    smaller (`hard_vocab_limit=False`); see `vocabulary_size()`.

    Args:
        model_proto: serialized SentencePiece model (bytes or base64 str), or
            None until `train`.
        vocab_size: target number of pieces, reserved ids included.
        model_type: "unigram" or "bpe".
        character_coverage: share of characters covered by the model; the
            rarest others become <unk>. Use 1.0 for small alphabets, 0.9995
            for languages with large character sets such as Chinese.
        user_defined_symbols: strings always kept as single pieces.
        seed: random seed for training.
        **kwargs: `sequence_length`, `add_start`, `add_end` (see `Tokenizer`)
            and the arguments of a Keras layer.

    Example:

    >>> corpus = ["the cat sat on the mat", "the dog sat on the log"] * 20
    >>> tokenizer = SentencePieceTokenizer(vocab_size=30, character_coverage=1.0).train(corpus)
    >>> ids = tokenizer(["the cat sat"])
    >>> tokenizer.detokenize(ids).numpy().tolist()
    [b'the cat sat']
    """

    def __init__(
        self,
        model_proto: bytes | str | None = None,
        vocab_size: int = 8000,
        model_type: Literal["unigram", "bpe"] = "unigram",
        character_coverage: float = 0.9995,
        user_defined_symbols: Iterable[str] | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        user_defined_symbols = list(user_defined_symbols or [])
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= len(RESERVED_TOKENS):
            raise ValueError(
                "Received an invalid value for argument `vocab_size`, expected an integer greater than "
                f"{len(RESERVED_TOKENS)}, got {vocab_size!r}."
            )
        if model_type not in MODEL_TYPES:
            raise ValueError(
                f"Received an invalid value for argument `model_type`, expected one of {MODEL_TYPES}, "
                f"got {model_type!r}."
            )
        if not 0 < character_coverage <= 1:
            raise ValueError(
                "Received an invalid value for argument `character_coverage`, expected a number in (0, 1], "
                f"got {character_coverage!r}."
            )
        if not all(isinstance(s, str) and s for s in user_defined_symbols):
            raise ValueError(
                "Received an invalid value for argument `user_defined_symbols`, expected non-empty strings, "
                f"got {user_defined_symbols!r}."
            )
        if any(s in RESERVED_TOKENS for s in user_defined_symbols):
            raise ValueError(f"`user_defined_symbols` may not contain the reserved tokens {RESERVED_TOKENS}.")
        if not isinstance(seed, int):
            raise ValueError(f"Received an invalid value for argument `seed`, expected an integer, got {seed!r}.")
        self.vocab_size = vocab_size
        self.model_type = model_type
        self.character_coverage = character_coverage
        self.user_defined_symbols = user_defined_symbols
        self.seed = seed
        self.model_proto: bytes | None = None
        if model_proto is not None:
            self.set_model_proto(model_proto)

    def set_model_proto(self, model_proto: bytes | str) -> None:
        """Use a serialized SentencePiece model (bytes or base64 str)."""
        proto = _as_proto_bytes(model_proto)
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(proto)
        except RuntimeError as error:
            raise ValueError(f"`model_proto` is not a valid SentencePiece model: {error}") from error
        expected = {PAD_ID: "<pad>", UNK_ID: "<unk>", START_ID: "<s>", END_ID: "</s>"}
        got = {i: processor.id_to_piece(i) for i in expected if i < processor.get_piece_size()}
        if got != expected:
            raise ValueError(
                f"`model_proto` must use nlptool's reserved ids {expected}, got {got}; train it with "
                "`SentencePieceTokenizer.train` or pad_id=0, unk_id=1, bos_id=2, eos_id=3."
            )
        self.model_proto = proto
        self._piece_count = processor.get_piece_size()
        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(proto)
        self._fast = model.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.UNIGRAM
        if self._fast:
            # the model is a constant input of the op: no resource, nothing shared between tokenisers
            self._sp = tf_text.FastSentencepieceTokenizer(proto)
        else:
            # This op's model resource is kernel-owned and, in a loaded SavedModel,
            # named after its graph node: two tokenisers with the default node name
            # would both get the model of whichever loads first (source and target
            # of a translation model, say). A name derived from the model keeps
            # different models apart and lets equal ones share.
            name = f"sentencepiece_{hashlib.sha256(proto).hexdigest()[:16]}"
            self._sp = tf_text.SentencepieceTokenizer(model=proto, out_type=tf.int32, name=name)

    def _sentences(self, texts: TrainingTexts) -> Iterator[str]:
        count = 0
        for count, text in enumerate(iterate_texts(texts), start=1):
            if count % LOG_EVERY == 0:
                logger.info("SentencePiece training: read %d sentences", count)
            yield text
        if count >= LOG_EVERY:
            logger.info("SentencePiece training: read %d sentences in all, learning the model", count)

    def train(self, texts: TrainingTexts) -> "SentencePieceTokenizer":
        writer = io.BytesIO()
        spm.set_random_generator_seed(self.seed)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=self._sentences(texts),
                model_writer=writer,
                vocab_size=self.vocab_size,
                model_type=self.model_type,
                character_coverage=self.character_coverage,
                user_defined_symbols=self.user_defined_symbols,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=START_ID,
                eos_id=END_ID,
                pad_piece="<pad>",
                unk_piece="<unk>",
                bos_piece="<s>",
                eos_piece="</s>",
                hard_vocab_limit=False,
                num_threads=1,
                minloglevel=1,  # warnings and errors only
            )
        except RuntimeError as error:
            message = str(error)
            if "required_chars" in message:
                raise ValueError(
                    f"`vocab_size`={self.vocab_size} is smaller than the number of distinct characters to "
                    "cover plus the reserved and user-defined pieces; increase `vocab_size` or lower "
                    f"`character_coverage`. (sentencepiece: {message})"
                ) from error
            raise ValueError(f"SentencePiece training failed: {message}") from error
        self.set_model_proto(writer.getvalue())
        return self

    def _check_trained(self):
        if self.model_proto is None:
            raise ValueError("This SentencePieceTokenizer has no model yet: call `train(texts)` or pass `model_proto`.")

    def vocabulary_size(self) -> int:
        self._check_trained()
        return self._piece_count

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        self._check_trained()
        if not self._fast or SHARDS == 1:
            return tf.cast(self._sp.tokenize(strings), tf.int32)
        count = tf.shape(strings)[0]
        bounds = [count * i // SHARDS for i in range(SHARDS + 1)]
        parts = [self._sp.tokenize(strings[bounds[i] : bounds[i + 1]]) for i in range(SHARDS)]
        return tf.cast(tf.concat(parts, axis=0), tf.int32)

    def ids_to_text(self, ids: tf.RaggedTensor) -> tf.Tensor:
        self._check_trained()
        return self._sp.detokenize(tf.cast(ids, tf.int32))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "model_proto": None if self.model_proto is None else base64.b64encode(self.model_proto).decode("ascii"),
                "vocab_size": self.vocab_size,
                "model_type": self.model_type,
                "character_coverage": self.character_coverage,
                "user_defined_symbols": list(self.user_defined_symbols),
                "seed": self.seed,
            }
        )
        return config
