"""Every task's serving signatures under hostile input, at a small size:
the cases of benchmarks/fuzz.py (empty, whitespace, control bytes, invalid
UTF-8, every Unicode plane, 100 kB and 1 MB texts, batches of 0 and 5,000,
decoding options at and past their bounds) on untrained tiny models, whose
decoders run to their length limits. Every call must answer well-formed
output, or refuse an out-of-range option naming it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import random
import sys
from pathlib import Path

import pandas as pd
import pytest

from nlptool.tasks.base import Splits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "police said on monday", "the film was good"]
TINY = ["model.embedding_dim=4", "tokenizer.vocab_size=40"]
SEQ = [*TINY, "model.encoder_units=4", "model.decoder_units=4", "model.attention_units=4"]


def frame(**columns):
    return pd.DataFrame(columns)


MODELS = {
    "sentiment": (
        "sentiment",
        Splits(frame(text=SENTENCES * 2, label=["a", "b"] * 4), frame(text=SENTENCES, label=["a", "b"] * 2)),
        [*TINY, "model.units=4"],
    ),
    "language model (word)": ("language-model", Splits(SENTENCES * 2, SENTENCES), [*TINY, "model.units=4"]),
    "language model (byte)": (
        "language-model",
        Splits(SENTENCES * 2, SENTENCES),
        [*TINY, "model.units=4", "tokenizer.kind=byte", "tokenizer.unit=text"],
    ),
    "translation": (
        "translation",
        Splits(frame(source=SENTENCES * 2, target=SENTENCES[::-1] * 2), frame(source=SENTENCES, target=SENTENCES)),
        [*SEQ, "tokenizer.kind=word"],
    ),
    "summarization": (
        "summarization",
        Splits(
            frame(text=SENTENCES * 2, summary=["cat", "dog", "police", "film"] * 2),
            frame(text=SENTENCES, summary=SENTENCES),
        ),
        SEQ,
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_signature_answers_hostile_input_or_refuses_it_by_name(name):
    task_name, splits, overrides = MODELS[name]
    task, module, signatures = fuzz.build(task_name, splits, overrides)
    report = fuzz.fuzz_signatures(
        name, signatures, fuzz.decoding_bounds(task), per_kind=8, rng=random.Random(0), long_count=1, big_batch=5000
    )
    assert report.failures == [], "\n".join(report.failures)
    # every signature that takes text ran through every case
    assert report.signatures == {n for n in signatures if not n.endswith("_defaults") and n != "class_names"}
    assert report.calls >= len(report.signatures) * (len(fuzz.KINDS) + 2)
