"""`nlptool train translation`, `evaluate`, `translate` and `export` end to
end on a tiny CSV, with the default SentencePiece tokenisers."""

import contextlib
import csv
import io
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from nlptool.cli import main

PAIRS = [
    ("der hund läuft schnell nach hause", "the dog runs home quickly"),
    ("die katze schläft auf dem sofa", "the cat sleeps on the sofa"),
    ("ein mann liest eine zeitung", "a man reads a newspaper"),
    ("zwei kinder spielen im garten", "two children play in the garden"),
]
TINY = [
    "tokenizer.vocab_size=48",
    "model.embedding_dim=16",
    "model.encoder_units=16",
    "model.decoder_units=24",
    "model.attention_units=16",
    "model.dropout=0.0",
    "training.batch_size=4",
    "training.learning_rate=0.02",
    "training.label_smoothing=0.0",
    "training.early_stopping_patience=100",
    "decoding.beam_width=3",
]


def run_cli(args):
    """main(args) -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def write_csv(path, rows, header=("de", "en")):
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return {
        "train": write_csv(root / "train.csv", PAIRS * 6),
        "validation": write_csv(root / "validation.csv", PAIRS),
        "test": write_csv(root / "test.csv", PAIRS),
    }


@pytest.fixture(scope="module")
def cli_run(files, tmp_path_factory):
    """A run that has learnt PAIRS by heart, trained by the CLI: (run dir, what it printed)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    code, out, err = run_cli(
        ["train", "translation", "--csv", files["train"], "--source-column", "de", "--target-column", "en"]
        + ["--validation-csv", files["validation"], "--test-csv", files["test"], *sets, "--epochs", "60"]
        + ["--run-dir", run]
    )
    assert code == 0, err
    return run, out


def test_train_prints_and_writes_test_metrics(cli_run, files):
    run, out = cli_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["pairs"] == len(PAIRS)
    # learnt by heart: every test sentence (a training sentence) comes back exactly
    assert metrics["bleu"] == pytest.approx(100.0) and metrics["greedy"]["bleu"] == pytest.approx(100.0)
    assert out.splitlines()[-1].startswith("test: 4 pairs, perplexity ")
    assert "BLEU 100.00 / chrF 100.00 (beam 3)" in out
    rows = (run / "translations.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "source\treference\tbeam\tgreedy"
    assert [row.split("\t") for row in rows[1:]] == [[s, t, t, t] for s, t in PAIRS]
    assert json.loads((run / "data.json").read_text())["task"] == "translation"


def test_evaluate_translate_export(cli_run, files, tmp_path):
    run, train_output = cli_run
    code, out, _ = run_cli(["evaluate", run])  # the run's test CSV, by default
    assert code == 0 and out.strip().split(": ", 1)[1] == train_output.splitlines()[-1].split(": ", 1)[1]

    sources = [s for s, _ in PAIRS[:2]]
    code, out, _ = run_cli(["translate", run, *sources])
    assert code == 0
    assert out.splitlines() == [f"{t}\t{s}" for s, t in PAIRS[:2]]
    code, greedy, _ = run_cli(["translate", run, "--greedy", *sources])
    assert code == 0 and greedy == out

    code, nbest, _ = run_cli(["translate", run, sources[0], "--n-best", "3"])
    assert code == 0
    lines = [line.split("\t") for line in nbest.splitlines()]
    assert len(lines) == 3 and lines[0][1] == PAIRS[0][1]
    scores = [float(score) for score, _, _ in lines]
    assert scores == sorted(scores, reverse=True)

    export = tmp_path / "export"
    code, printed, err = run_cli(["export", run, export])
    assert code == 0, err
    assert (
        printed == f"wrote {export} (signatures: serving_default, beam_search, greedy, attention, decoding_defaults)\n"
    )
    assert run_cli(["translate", export, *sources])[1] == out
    assert run_cli(["translate", export, sources[0], "--n-best", "3"])[1] == nbest

    plot = tmp_path / "attention.png"
    code, out, _ = run_cli(["translate", export, sources[0], "--plot-attention", plot])
    assert code == 0 and out.splitlines() == [f"{PAIRS[0][1]}\t{sources[0]}", f"wrote {plot}"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, err = run_cli(["translate", run, sources[0], "--n-best", "4"])  # beam width 3
    assert code == 2 and "n_best <= beam width" in err
    code, _, err = run_cli(["translate", run, *sources, "--plot-attention", plot])
    assert code == 2 and "one sentence" in err
    code, _, err = run_cli(["export", run, export])
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--csv", "TRAIN"], "--csv needs --source-column and --target-column"),
        (["--csv", "TRAIN", "--source-column", "de", "--target-column", "fr"], "no column 'fr'"),
        (["--csv", "MISSING", "--source-column", "de", "--target-column", "en"], "does not exist"),
        (["--csv", "EMPTY_TARGET", "--source-column", "de", "--target-column", "en"], "empty or missing target"),
        (["--dataset", "sst2", "--source-lang", "de", "--target-lang", "en"], "not a translation dataset"),
        (["--dataset", "multi30k", "--source-lang", "de", "--target-lang", "es"], "no language 'es'"),
        (["--dataset", "multi30k", "--source-lang", "de", "--target-lang", "de"], "both 'de'"),
        (["--csv", "TRAIN", "--source-column", "de", "--target-column", "en", "--set", "model.unitz=3"], "model.unitz"),
    ],
)
def test_bad_input_leaves_no_run_directory(files, tmp_path, args, message):
    empty_target = write_csv(tmp_path / "empty_target.csv", [("ein satz", "a sentence"), ("noch einer", "")])
    replace = {"TRAIN": files["train"], "MISSING": tmp_path / "missing.csv", "EMPTY_TARGET": empty_target}
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "translation", *[replace.get(a, a) for a in args], "--run-dir", run])
    assert code == 2
    assert message in err
    assert not run.exists()


def test_translation_flags_are_refused_for_other_tasks(files, tmp_path):
    code, _, err = run_cli(
        ["train", "sentiment", "--csv", files["train"], "--text-column", "de", "--label-column", "en"]
        + ["--source-lang", "de", "--run-dir", tmp_path / "run"]
    )
    assert code == 2 and "are for translation runs" in err
