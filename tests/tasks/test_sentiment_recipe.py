"""recipes/sentiment.py as a user runs it, with language-model pre-training,
on the sample CSV and tiny configs."""

import json
import os
import subprocess
import sys
from pathlib import Path

from nlptool import config as config_lib
from nlptool.tasks import language_model_steps, sentiment_steps
from nlptool.tasks.sentiment import SentimentConfig

ROOT = Path(__file__).resolve().parents[2]


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
        [sys.executable, str(ROOT / "recipes" / "sentiment.py"), "--csv", str(ROOT / "data" / "sample_sentiment.csv")]
        + ["--config", str(classifier), "--pretrain", str(language_model), "--pretrain-words", "100"]
        + ["--run-dir", str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lm_run = tmp_path / "run_language_model"
    _, lm_tokenizer, _ = language_model_steps.load_run(lm_run)
    _, tokenizer, _, _ = sentiment_steps.load_run(run)
    # the language model read the first 100 words of the recipe's training share, no more
    data = sentiment_steps.csv_data(ROOT / "data" / "sample_sentiment.csv", "text", "label", 1234, 0.25)
    texts = language_model_steps.first_words(data.train["text"].tolist(), 100)
    assert 0 < len(texts) < len(data.train)
    stream = language_model_steps.token_stream(lm_tokenizer, texts, "line")
    assert json.loads((lm_run / "training.json").read_text())["train_tokens"] == len(stream)
    # the classifier took the language model's tokeniser and sizes
    assert tokenizer.vocabulary == lm_tokenizer.vocabulary
    saved = config_lib.resolve(SentimentConfig, [run / "config.yaml"])
    assert (saved.model.embedding_dim, saved.model.units) == (8, 8)  # the language model's, not 4 and 6
    assert (run / "export" / "saved_model.pb").is_file()
    predictions = [line for line in result.stdout.splitlines() if line.startswith(("positive", "negative"))]
    assert len(predictions) == 4  # one line per example sentence of the recipe, in order
    assert predictions[-1].endswith("It isn't funny, and I didn't care about anyone in it.")
