"""`nlptool train translation`, `evaluate`, `translate` / `predict` and
`export` end to end on a tiny CSV, with the default SentencePiece tokenisers."""

import contextlib
import csv
import io
import json
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from harness import call_export

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
SIGNATURES = "serving_default, beam_search, greedy, attention, decoding_defaults"


def run_cli(args):
    """main(args) -> (exit code, stdout, stderr); argparse's own exits give their code too."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def write_table(path, rows, header=("de", "en"), delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return {
        "train": write_table(root / "train.csv", PAIRS * 6),
        "validation": write_table(root / "validation.csv", PAIRS),
        "test": write_table(root / "test.csv", PAIRS),
    }


@pytest.fixture(scope="module")
def cli_run(files, tmp_path_factory):
    """A run that has learnt PAIRS by heart, trained by the CLI from files whose
    columns are named de and en: (run dir, what it printed)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    code, out, err = run_cli(
        ["train", "translation", "--train-file", files["train"], "--source-column", "de", "--target-column", "en"]
        + ["--validation-file", files["validation"], "--test-file", files["test"], *sets, "--epochs", "60"]
        + ["--run-dir", run]
    )
    assert code == 0, err
    return run, out


@pytest.fixture(scope="module")
def cli_export(cli_run, tmp_path_factory):
    export = tmp_path_factory.mktemp("cli_export") / "export"
    code, printed, err = run_cli(["export", cli_run[0], export])
    assert code == 0, err
    assert printed == f"wrote {export / '1'} (signatures: {SIGNATURES})\n"
    return export


def summary_of(line):
    """A metrics line without the name of the split it is about."""
    return line.split(": ", 1)[1]


def test_train_prints_and_writes_test_metrics(cli_run, files):
    run, out = cli_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["pairs"] == len(PAIRS)
    # learnt by heart: every test sentence (a training sentence) comes back exactly
    assert metrics["bleu"] == pytest.approx(100.0) and metrics["greedy"]["bleu"] == pytest.approx(100.0)
    lines = out.splitlines()
    assert lines[0] == "24 training, 4 validation, 4 test sentence pairs"
    assert lines[-2].startswith("test: 4 pairs, perplexity ")
    assert "BLEU 100.00 / chrF 100.00 (beam 3)" in lines[-2]
    assert lines[-1] == f"wrote {run / 'metrics.json'}"
    rows = (run / "translations.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "source\treference\tbeam\tgreedy"
    assert [row.split("\t") for row in rows[1:]] == [[s, t, t, t] for s, t in PAIRS]
    record = json.loads((run / "run.json").read_text())
    assert record["task"] == "translation"
    assert record["data"]["columns"] == {"source": "de", "target": "en"}
    assert record["data"]["test_file"] == str(files["test"].resolve())
    assert record["config"]["training"]["epochs"] == 60
    assert (run / "source_tokenizer" / "tokenizer.json").is_file() and (run / "target_tokenizer").is_dir()


def test_evaluate_translate_export(cli_run, cli_export, tmp_path, caplog):
    run, train_output = cli_run
    code, out, err = run_cli(["evaluate", run])  # the run's test file, by default
    assert code == 0, err
    summary, wrote = out.splitlines()
    assert summary_of(summary) == summary_of(train_output.splitlines()[-2])
    assert wrote == f"wrote {run / 'metrics.json'}"
    code, out, _ = run_cli(["evaluate", run, "--beam-width", "1"])
    assert code == 0 and "(beam 1)" in out

    sources = [s for s, _ in PAIRS[:2]]
    code, out, _ = run_cli(["translate", run, *sources])
    assert code == 0
    assert out.splitlines() == [f"{t}\t{s}" for s, t in PAIRS[:2]]
    translations = out
    code, greedy, _ = run_cli(["translate", run, "--greedy", *sources])
    assert code == 0 and greedy == translations

    code, nbest, _ = run_cli(["translate", run, sources[0], "--n-best", "3"])
    assert code == 0
    lines = [line.split("\t") for line in nbest.splitlines()]
    assert len(lines) == 3 and lines[0][1] == PAIRS[0][1] and all(line[2] == sources[0] for line in lines)
    scores = [float(score) for score, _, _ in lines]
    assert scores == sorted(scores, reverse=True)

    export = cli_export
    assert run_cli(["translate", export, *sources])[1] == translations
    assert run_cli(["translate", export, sources[0], "--n-best", "3"])[1] == nbest
    code, as_json, _ = run_cli(["translate", export, sources[0], "--json"])
    row = json.loads(as_json)
    assert code == 0 and row["input"] == sources[0] and row["text"] == PAIRS[0][1]

    plot = tmp_path / "attention.png"
    with caplog.at_level(logging.INFO, logger="nlptool"):
        code, out, _ = run_cli(["translate", export, sources[0], "--plot-attention", plot])
    assert code == 0 and out.splitlines() == [f"{PAIRS[0][1]}\t{sources[0]}"]
    assert f"wrote {plot}" in caplog.messages
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, err = run_cli(["translate", run, sources[0], "--n-best", "4"])  # beam width 3
    assert code == 2 and "n_best <= beam width" in err and err.count("\n") == 1
    code, _, err = run_cli(["translate", run, *sources, "--plot-attention", tmp_path / "two.png"])
    assert code == 2 and "one sentence" in err and not (tmp_path / "two.png").exists()
    code, _, err = run_cli(["export", run, export, "--version", "1"])
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(["export", run, export, "--version", "1", "--overwrite"])
    assert code == 0, err
    assert run_cli(["translate", export, *sources])[1] == translations


def test_the_export_translates_the_same_in_a_process_without_nlptool(cli_run, cli_export):
    """SentencePiece needs the ops of tensorflow_text, and nothing else of nlptool's."""
    sources = [s for s, _ in PAIRS]
    [served] = call_export(cli_export, [("serving_default", {"source": (sources, "string")})], tensorflow_text=True)
    assert served["text"] == [t for _, t in PAIRS]
    code, out, _ = run_cli(["translate", cli_run[0], *sources])
    assert code == 0 and out.splitlines() == [f"{t}\t{s}" for s, t in zip(sources, served["text"])]


def test_predict_is_translate(cli_run, cli_export):
    sources = [s for s, _ in PAIRS[2:]]
    for path in (cli_run[0], cli_export):
        code, predicted, err = run_cli(["predict", path, *sources])
        assert code == 0, err
        assert predicted == run_cli(["translate", path, *sources])[1]
        assert predicted.splitlines() == [f"{t}\t{s}" for s, t in PAIRS[2:]]
        # the task's options, under either spelling
        assert (
            run_cli(["predict", path, sources[0], "--n-best", "2"])[1]
            == run_cli(["translate", path, sources[0], "--n-best", "2"])[1]
        )


def test_generate_on_a_translation_export_is_refused_in_one_line(cli_run, cli_export):
    for path, kind in ((cli_export, "export"), (cli_run[0], "run")):
        code, out, err = run_cli(["generate", path, "ein"])
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("nlptool: error: ")
        assert f"is a translation {kind}" in err and f"nlptool predict {path}" in err


def test_evaluate_a_file_reuses_the_run_s_columns(cli_run, tmp_path):
    run, _ = cli_run
    pairs = write_table(tmp_path / "pairs.tsv", PAIRS[1:3], delimiter="\t")
    code, out, err = run_cli(["evaluate", run, "--test-file", pairs])
    assert code == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == str(pairs) and metrics["pairs"] == 2
    assert metrics["bleu"] == pytest.approx(100.0)
    assert out.splitlines()[0].startswith(f"{pairs}: 2 pairs, perplexity ")
    rows = (run / "translations.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert [row.split("\t") for row in rows] == [[s, t, t, t] for s, t in PAIRS[1:3]]
    # other columns, named on the command line
    renamed = write_table(tmp_path / "renamed.csv", PAIRS[:1], header=("deutsch", "english"))
    code, _, err = run_cli(["evaluate", run, "--test-file", renamed, "--source-column", "deutsch"])
    assert code == 2 and "no column 'en'" in err and "['deutsch', 'english']" in err
    code, out, err = run_cli(
        ["evaluate", run, "--test-file", renamed, "--source-column", "deutsch", "--target-column", "english"]
    )
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["pairs"] == 1


def test_train_help_shows_only_the_options_of_translation():
    code, out, _ = run_cli(["train", "translation", "--help"])
    assert code == 0
    for option in ("--source-lang", "--target-lang", "--source-column", "--target-column", "--train-file"):
        assert option in out, option
    for option in ("--label-column", "--text-column", "--init-from", "--init-encoder-from", "--csv"):
        assert option not in out, option


@pytest.mark.parametrize(
    "args,message",
    [
        (["--train-file", "TRAIN"], "no column 'source' (argument `--source-column`); its columns are ['de', 'en']"),
        (["--train-file", "TRAIN", "--source-column", "de", "--target-column", "fr"], "no column 'fr'"),
        (["--train-file", "MISSING", "--source-column", "de", "--target-column", "en"], "does not exist"),
        (
            ["--train-file", "EMPTY_TARGET", "--source-column", "de", "--target-column", "en"],
            "empty or missing target",
        ),
        (["--dataset", "sst2", "--source-lang", "de", "--target-lang", "en"], "not a translation dataset"),
        (["--dataset", "multi30k", "--source-lang", "de", "--target-lang", "es"], "no language 'es'"),
        (["--dataset", "multi30k", "--source-lang", "de", "--target-lang", "de"], "both 'de'"),
        (
            ["--train-file", "TRAIN", "--source-column", "de", "--target-column", "en", "--set", "model.unitz=3"],
            "model.unitz",
        ),
    ],
)
def test_bad_input_leaves_no_run_directory(files, tmp_path, args, message):
    empty_target = write_table(tmp_path / "empty_target.csv", [("ein satz", "a sentence"), ("noch einer", "")])
    replace = {"TRAIN": files["train"], "MISSING": tmp_path / "missing.csv", "EMPTY_TARGET": empty_target}
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "translation", *[replace.get(a, a) for a in args], "--run-dir", run])
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("nlptool: error: ")
    assert not run.exists()


def test_translation_flags_are_refused_for_other_tasks(files, tmp_path):
    code, _, err = run_cli(
        ["train", "sentiment", "--train-file", files["train"], "--text-column", "de", "--label-column", "en"]
        + ["--source-lang", "de", "--run-dir", tmp_path / "run"]
    )
    assert code == 2 and "unrecognized arguments: --source-lang de" in err
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_not_trained_again_without_overwrite(cli_run, files):
    run, _ = cli_run
    sets = [a for s in TINY for a in ("--set", s)]
    args = ["train", "translation", "--train-file", files["train"], "--source-column", "de", "--target-column", "en"]
    args += ["--validation-file", files["validation"], "--test-file", files["test"], *sets, "--run-dir", run]
    code, _, err = run_cli([*args, "--epochs", "60"])
    assert code == 2 and "finished run" in err and "--overwrite" in err
    code, _, err = run_cli([*args, "--epochs", "61"])
    assert code == 2 and "training.epochs: 60 in the run, 61 now" in err
    assert json.loads((run / "run.json").read_text())["config"]["training"]["epochs"] == 60


def test_the_recipe_runs_on_a_tiny_setting(files, tmp_path):
    """recipes/translation.py as a user runs it, on the CSV files with word tokenisers and one epoch."""
    import subprocess
    import sys
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "translation.py"
    sets = ["tokenizer.kind=word", "tokenizer.vocab_size=40", "training.epochs=1", "model.embedding_dim=8"]
    sets += ["model.encoder_units=8", "model.decoder_units=16", "model.attention_units=8", "decoding.beam_width=2"]
    run = tmp_path / "run"
    args = [sys.executable, str(recipe), "--train-file", str(files["train"]), "--source-column", "de"]
    args += ["--target-column", "en", "--max-train-pairs", "20", "--run-dir", str(run)]
    args += [a for s in sets for a in ("--set", s)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("first training pair: ")
    assert "20 training, 1 validation sentence pairs" in lines  # 5 % of 24 pairs held out, then the first 20
    assert f"Exported to {run / 'export' / '1'}" in lines
    assert lines[-1].startswith("Attention of '") and lines[-1].endswith(f"drawn in {run / 'attention.png'}")
    assert (run / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "run.json").read_text())["data"]["max_train_examples"] == 20
    # the same command again: a finished run is refused, and left as it was
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "finished run" in again.stderr


def test_the_command_line_translates_with_a_sentencepiece_export_in_a_fresh_process(cli_export):
    """As a user runs it: a new `nlptool` process whose SavedModel needs tensorflow_text's ops
    (SentencePiece), which nothing but the command itself has registered."""
    import subprocess
    import sys
    from pathlib import Path

    sources = [s for s, _ in PAIRS[:2]]
    script = Path(sys.executable).parent / "nlptool"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "nlptool.cli"]
    done = subprocess.run(
        [*command, "translate", str(cli_export), *sources], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"{t}\t{s}" for s, t in PAIRS[:2]]
