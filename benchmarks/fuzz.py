"""Fuzzing every export: hostile strings, batch sizes and decoding options.

For each task (sentiment with a word and a SentencePiece tokeniser, a word
and a byte language model, translation, summarisation) this builds a small
model on real data from NLPTOOL_DATA_DIR (untrained: an untrained decoder
runs to its length limits, the worst case), exports it, loads the export
with tf.saved_model.load as a server would, and calls every signature with:

- strings of each kind: empty, whitespace, NUL and control bytes, invalid
  UTF-8, characters from every Unicode plane, 100 kB and 1 MB texts;
- batches of 0 strings and of 5,000;
- every decoding option at its bounds (must answer) and past them (must be
  refused with InvalidArgumentError naming the option).

A failure is any other error, an output whose first dimension is not the
batch's, a string output that is not UTF-8, or a NaN. It writes
benchmarks/results/fuzz.json (failures, which must be 0; p50 / p99 seconds
per call by input length band; the worst call; peak memory) and prints a
table:

    python benchmarks/fuzz.py [--per-kind 10000] [--long 20]

`tests/test_fuzz.py` runs the same cases at a small size on every task in
`make test`.
"""

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.json"
BANDS = ((0, "0 B"), (100, "1-100 B"), (10_000, "101 B-10 kB"), (200_000, "10-200 kB"), (None, "> 200 kB"))
PLANES = [(0x20, 0x7E), (0xA0, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x1FFFF), (0x20000, 0x2FFFF), (0xE0000, 0xE01EF),
          (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)]  # fmt: skip
WHITESPACE = " \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2028\u2029\u3000"
BATCH = 50  # strings per call for the short kinds


# === the inputs ===


def strings(kind, count, rng, long_count=2):
    """`count` fuzz strings of `kind` (bytes: tf.string holds any bytes); the long kinds give `long_count`."""
    if kind == "empty":
        return [b""] * count
    if kind == "whitespace":
        return ["".join(rng.choice(WHITESPACE) for _ in range(rng.randint(1, 12))).encode() for _ in range(count)]
    if kind == "control":
        return [bytes(rng.choice([*range(0, 32), 127]) for _ in range(rng.randint(1, 12))) for _ in range(count)]
    if kind == "invalid_utf8":
        return [bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 24))) + b" ok" for _ in range(count)]
    if kind == "planes":
        return ["".join(chr(rng.randint(*rng.choice(PLANES))) for _ in range(rng.randint(1, 40))).encode()
                for _ in range(count)]  # fmt: skip
    if kind in ("100kB", "1MB"):
        size = 100_000 if kind == "100kB" else 1_000_000
        words = [b"the", b"film", b"police", b"said", b"\xff", "héllo".encode(), b"\x00", b"zzzzqqq"]
        out = []
        for _ in range(long_count):
            text = b" ".join(rng.choice(words) for _ in range(size // 4))
            out.append(text[:size])
        return out
    raise ValueError(f"Unknown kind {kind!r}.")


KINDS = ("empty", "whitespace", "control", "invalid_utf8", "planes", "100kB", "1MB")


def option_cases(bounds, defaults):
    """(name, value, valid) for each bounded option: at its bounds (valid) and just past them, NaN (invalid)."""
    cases = []
    for name, bound in bounds.items():
        if name not in defaults:
            continue
        integer = isinstance(defaults[name], int) and not isinstance(defaults[name], bool)
        low = int(bound.low) if integer else float(bound.low)
        cases.append((name, low + (1 if integer else 1e-3) if bound.low_open else low, True))
        cases.append((name, low if bound.low_open else low - 1, False))
        if bound.high is not None:
            high = int(bound.high) if integer else float(bound.high)
            cases.append((name, high - (1 if integer else 1e-3) if bound.high_open else high, True))
            cases.append((name, high if bound.high_open else high + 1, False))
        if not integer:
            cases.append((name, float("nan"), False))
    return cases


# === the checks ===


def check(outputs, rows):
    """The problems with one call's outputs for `rows` inputs (an empty list when well-formed)."""
    import numpy as np

    problems = []
    for key, value in outputs.items():
        array = value.numpy()
        if array.ndim and array.shape[0] != rows:
            problems.append(f"{key} has {array.shape[0]} rows for {rows} inputs")
        if array.dtype == object:
            for item in array.reshape(-1):
                try:
                    item.decode("utf-8")
                except UnicodeDecodeError:
                    problems.append(f"{key} is not UTF-8: {item[:40]!r}")
                    break
        elif array.dtype.kind == "f" and np.isnan(array).any():
            problems.append(f"{key} holds NaN")
    return problems


def band(size):
    for limit, name in BANDS:
        if limit is None or size <= limit:
            return name
    return BANDS[-1][1]


class Report:
    """Failures and per-call times of one export."""

    def __init__(self, name):
        self.name, self.failures, self.times, self.calls, self.signatures = name, [], {}, 0, set()

    def call(self, what, signature, arguments, rows, size, expect_error=None):
        import tensorflow as tf

        self.calls += 1
        started = time.perf_counter()
        try:
            outputs = signature(**arguments)
        except tf.errors.InvalidArgumentError as error:
            if expect_error is None or expect_error not in str(error):
                self.failures.append(f"{what}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            return
        except Exception as error:  # noqa: BLE001 (any other error is a failure to report)
            self.failures.append(f"{what}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
            return
        seconds = time.perf_counter() - started
        if expect_error is not None:
            self.failures.append(f"{what}: accepted, where {expect_error!r} should be refused")
            return
        self.failures += [f"{what}: {problem}" for problem in check(outputs, rows)]
        self.times.setdefault(band(size), []).append(seconds)


def fuzz_signatures(name, signatures, bounds, per_kind, rng, long_count=2, big_batch=5000):
    """Call every signature of one export (or serving module) with every
    case; returns its Report. `bounds` maps each decoding option to its Range."""
    import tensorflow as tf

    report = Report(name)
    defaults_name = next((n for n in signatures if n.endswith("_defaults")), None)
    defaults = {k: v.numpy().item() for k, v in signatures[defaults_name]().items()} if defaults_name else {}
    for signature_name, signature in signatures.items():
        if not hasattr(signature, "structured_input_signature"):  # a tf.function of a module in process
            signature = signature.get_concrete_function()
        positional, specs = signature.structured_input_signature
        specs = specs or {spec.name: spec for spec in positional}
        texts = [key for key, spec in specs.items() if spec.dtype == tf.string]
        if not texts:
            continue
        report.signatures.add(signature_name)
        scalars = {}
        for key, spec in specs.items():
            if key in texts:
                continue
            value = defaults.get(key, {"n_best": 1, "seed": 0, "beam_width": 2, "max_new_tokens": 8}.get(key))
            if key == "max_new_tokens":
                value = min(value, 8)
            scalars[key] = tf.constant(value, spec.dtype)

        def arguments(batch, extra=None, texts=texts, scalars=scalars):
            return {**{k: tf.constant(batch, tf.string) for k in texts}, **scalars, **(extra or {})}

        for kind in KINDS:
            cases = strings(kind, per_kind, rng, long_count)
            step = 1 if kind in ("100kB", "1MB") else BATCH
            for start in range(0, len(cases), step):
                batch = cases[start : start + step]
                size = max(len(s) for s in batch)
                report.call(f"{signature_name} {kind}", signature, arguments(batch), len(batch), size)
        report.call(f"{signature_name} batch of 0", signature, arguments([]), 0, 0)
        many = [b"a short text", b"", b"another one"] * (big_batch // 3)
        report.call(f"{signature_name} batch of {len(many)}", signature, arguments(many), len(many), 12)
        for option, value, valid in option_cases(bounds, {k: defaults.get(k, 1) for k in scalars}):
            if option not in scalars:
                continue
            extra = {option: tf.constant(value, scalars[option].dtype)}
            what = f"{signature_name} {option}={value}"
            report.call(what, signature, arguments([b"a short text"], extra), 1, 12, None if valid else option)
    return report


def decoding_bounds(task):
    """The Range of every decoding option of `task`'s config (generation / decoding sections), and n_best."""
    import dataclasses

    from nlptool.tasks.base import AT_LEAST_ONE, Section

    bounds = {"n_best": AT_LEAST_ONE, "beam_width": AT_LEAST_ONE}
    for field in dataclasses.fields(task.config_class):
        section = field.type if isinstance(field.type, type) else None
        if section is not None and issubclass(section, Section) and field.name in ("generation", "decoding"):
            bounds.update(section.bounds())
    return bounds


# === the models ===


def build(task_name, splits, overrides):
    """(task, serving module, signatures) of an untrained model of `task_name` prepared on `splits`."""
    import keras

    from nlptool import config as config_lib
    from nlptool import tasks
    from nlptool.tasks.base import Trained

    task = tasks.get(task_name)
    config = config_lib.resolve(task.config_class, [], overrides)
    keras.utils.set_random_seed(0)
    config, preprocessing = task.prepare(config, splits)
    model = task.build_model(config, preprocessing)
    module, signatures = task.serving_module(Trained(task, config, preprocessing, model, None))
    return task, module, signatures


def real_models(rows=2000):
    """name -> (task name, Splits, config overrides): small models on the shared datasets."""
    from nlptool import config as config_lib
    from nlptool import tasks
    from nlptool.tasks.base import DataSource, Splits

    def data(task_name, dataset, extra=()):
        task = tasks.get(task_name)
        config = config_lib.resolve(task.config_class, [], list(extra))
        splits = task.read_data(DataSource(dataset=dataset, max_train_examples=rows), config)
        return Splits(splits.train, splits.validation)

    small, byte = ["model.embedding_dim=16"], ["tokenizer.kind=byte", "tokenizer.unit=text"]
    seq = [*small, "model.encoder_units=16", "model.decoder_units=16", "model.attention_units=16"]
    return {
        "sentiment (word)": ("sentiment", data("sentiment", "sst2"), [*small, "model.units=16"]),
        "sentiment (sentencepiece)": (
            "sentiment", data("sentiment", "sst2"),
            [*small, "model.units=16", "tokenizer.kind=sentencepiece", "tokenizer.vocab_size=500"],
        ),
        "language model (word)": ("language-model", data("language-model", "ptb"), [*small, "model.units=16"]),
        "language model (byte)": (
            "language-model", data("language-model", "tiny_shakespeare", byte), [*small, "model.units=16", *byte],
        ),
        "translation": ("translation", data("translation", "multi30k"), [*seq, "tokenizer.vocab_size=500"]),
        "summarization": ("summarization", data("summarization", "gigaword"), [*seq, "tokenizer.vocab_size=2000"]),
    }  # fmt: skip


def main():
    import numpy as np
    import tensorflow as tf

    from nlptool import export as export_lib

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=10_000, help="strings of each short kind per signature")
    parser.add_argument("--long", type=int, default=20, help="100 kB and 1 MB strings per signature")
    parser.add_argument("--only", nargs="*", help="the models to fuzz (default: all)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    rng = random.Random(0)
    rows = []
    for name, (task_name, splits, overrides) in real_models().items():
        if args.only and name not in args.only:
            continue
        task, module, signatures = build(task_name, splits, overrides)
        with tempfile.TemporaryDirectory() as folder:
            export_dir = export_lib.save(module, Path(folder) / "export", signatures=signatures)
            loaded = tf.saved_model.load(str(export_dir))
            started = time.perf_counter()
            report = fuzz_signatures(
                name, dict(loaded.signatures), decoding_bounds(task), args.per_kind, rng, args.long
            )
            seconds = time.perf_counter() - started
        bands = {
            band_name: {"calls": len(times), "p50_s": float(np.median(times)), "p99_s": float(np.percentile(times, 99)),
                        "max_s": float(max(times))}
            for band_name, times in report.times.items()
        }  # fmt: skip
        rows.append({"export": name, "calls": report.calls, "failures": len(report.failures),
                     "failure_examples": report.failures[:20], "bands": bands, "seconds": round(seconds, 1),
                     "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})  # fmt: skip
        worst = max((b["max_s"] for b in bands.values()), default=0.0)
        print(f"{name:28} {report.calls:6d} calls  {len(report.failures):3d} failures  worst call {worst:6.2f} s  "
              f"peak {rows[-1]['peak_rss_mib']} MiB", flush=True)  # fmt: skip
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "tensorflow": tf.__version__},
        "per_kind": args.per_kind, "long": args.long,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'export':28} {'band':14} {'calls':>6} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    for row in rows:
        for band_name, b in row["bands"].items():
            line = f"{row['export']:28} {band_name:14} {b['calls']:6d} {b['p50_s']:8.4f} {b['p99_s']:8.4f}"
            print(f"{line} {b['max_s']:8.3f}")
    return 0 if all(row["failures"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
