"""recipes/sentiment.py as a user runs it, with language-model pre-training,
on the sample CSV and tiny configs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from nlptool import config as config_lib
from nlptool import runs, tasks
from nlptool.models.language_model import token_stream
from nlptool.tasks.base import DataSource
from nlptool.tasks.language_model import first_words
from nlptool.tasks.sentiment import SentimentConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample_sentiment.csv"


def test_recipe_pretrains_a_language_model_and_starts_the_classifier_from_it(tmp_path):
    classifier = tmp_path / "sentiment.yaml"
    classifier.write_text(
        "tokenizer: {kind: word, vocab_size: 60}\n"
        "model: {embedding_dim: 4, units: 6}\n"
        "training: {epochs: 2, batch_size: 8, validation_fraction: 0.25}\n"
    )
    language_model = tmp_path / "lm.yaml"
    language_model.write_text(
        "tokenizer: {kind: word, vocab_size: 60, lowercase: true, split_punctuation: true}\n"
        "model: {embedding_dim: 8, units: 8, layers: 1}\n"
        "training: {epochs: 1, batch_size: 2, window: 5}\n"
    )
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "sentiment.py"), "--csv", str(SAMPLE)]
        + ["--config", str(classifier), "--pretrain", str(language_model), "--pretrain-words", "100"]
        + ["--run-dir", str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lm_run = tmp_path / "run_language_model"
    lm = runs.Run.open(lm_run)
    assert lm.task.name == "language-model" and lm.finished
    lm_tokenizer = lm.load().preprocessing.tokenizers["text"]
    sentiment = runs.Run.open(run)
    assert sentiment.task.name == "sentiment" and sentiment.finished
    tokenizer = sentiment.load().preprocessing.tokenizers["text"]
    # the run records what the command line would: the CSV, its columns, and the language model it started from
    request = json.loads((run / "run.json").read_text())
    assert request["data"]["train_file"] == str(SAMPLE) and request["data"]["columns"] == {
        "text": "text",
        "label": "label",
    }
    assert request["options"] == {"init_encoder_from": str(lm_run)}
    # the language model read the first 100 words of the recipe's training share, no more
    config = config_lib.resolve(SentimentConfig, [classifier])
    data = tasks.get("sentiment").read_data(DataSource(train_file=SAMPLE), config)
    texts = first_words(data.train["text"].tolist(), 100)
    assert 0 < len(texts) < len(data.train)
    stream = token_stream(lm_tokenizer, texts, "line")
    assert json.loads((lm_run / "training.json").read_text())["train_tokens"] == len(stream)
    # the classifier took the language model's tokeniser and sizes
    assert tokenizer.vocabulary == lm_tokenizer.vocabulary
    saved = config_lib.resolve(SentimentConfig, [run / "config.yaml"])
    assert (saved.model.embedding_dim, saved.model.units) == (8, 8)  # the language model's, not 4 and 6
    assert (run / "export" / "1" / "saved_model.pb").is_file()
    predictions = [line for line in result.stdout.splitlines() if line.startswith(("positive", "negative"))]
    assert len(predictions) == 5  # one line per example sentence of the recipe, in order
    assert predictions[-1].endswith("It isn't funny, and I didn't care about anyone in it.")


def test_recipe_fine_tunes_the_shipped_preset(tmp_path, monkeypatch):
    """`make demo`'s route on the sample CSV: the classifier takes the preset's tokeniser and sizes."""
    from nlptool import presets

    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "sentiment.py"), "--csv", str(SAMPLE)]
        + ["--init-from", "preset:english-small", "--set", "training.epochs=1", "--run-dir", str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["options"] == {"init_from": "preset:english-small"}
    sentiment = runs.Run.open(run).load()
    preset = runs.load("preset:english-small").load()
    assert sentiment.config.model.units == preset.config.model.units
    assert sentiment.preprocessing.tokenizers["text"].vocabulary == preset.preprocessing.tokenizers["text"].vocabulary
    assert "not good" in result.stdout
    assert presets.run_dir("english-small").is_relative_to(tmp_path / "cache")  # unpacked there by the recipe
