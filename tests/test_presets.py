"""Presets: packing a language model run, unpacking it as a user gets it, starting a classifier from it."""

import json

import numpy as np
import pytest

import nlptool
from nlptool import presets, runs
from nlptool.cli import main
from nlptool.errors import RunError, UsageError

LINES = [
    "the film was good and the acting was good",
    "the film was bad and the plot was bad",
    "a good film with a good cast",
    "a bad film with a bad plot",
    "not good at all",
    "not bad at all",
] * 4
LM = [
    "model.units=12",
    "model.embedding_dim=8",
    "model.layers=1",
    "tokenizer.vocab_size=40",
    "training.batch_size=2",
    "training.window=5",
    "training.epochs=1",
]
REVIEWS = {
    "text": ["a good film", "a bad film", "good cast", "bad plot", "the film was good", "the plot was bad"] * 3,
    "label": ["pos", "neg"] * 9,
}


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    run = nlptool.train("language-model", run_dir, train=LINES, validation=LINES[:4], overrides=LM, verbose=0)
    return run


BACKWARD = ["model.direction=backward", "model.train_embedding=false"]


@pytest.fixture(scope="module")
def backward_model(language_model, tmp_path_factory):
    """A backward language model started from the forward one, its word vectors fixed."""
    run_dir = tmp_path_factory.mktemp("lm") / "backward"
    return nlptool.train(
        "language-model",
        run_dir,
        train=LINES,
        validation=LINES[:4],
        overrides=[*LM, *BACKWARD],
        init_from=str(language_model.path),
        verbose=0,
    )


@pytest.fixture(scope="module")
def packed(language_model, backward_model, tmp_path_factory):
    """The folder of presets holding "tiny" (packed from the two language models)."""
    folder = tmp_path_factory.mktemp("presets")
    presets.pack(
        language_model,
        folder / "tiny",
        name="tiny",
        version=3,
        description="a test preset",
        corpus=[{"dataset": "none", "lines": len(LINES)}],
        licences="test text",
        corpus_summary="24 lines",
        build_command="(the test)",
        metrics={"validation_perplexity": 9.5},
        backward=backward_model,
        backward_metrics={"validation_perplexity": 10.5},
    )
    return folder


@pytest.fixture
def search(packed, monkeypatch, tmp_path):
    """The test's presets on the search path and a cache of its own."""
    monkeypatch.setattr(presets, "SEARCH_PATH", [packed])
    monkeypatch.setenv("NLPTOOL_CACHE_DIR", str(tmp_path / "cache"))
    return packed


def test_unpacked_weights_are_the_runs_in_float16(language_model, search):
    run = nlptool.load("preset:tiny")
    assert isinstance(run, runs.Run) and run.task.name == "language-model" and run.finished
    original = language_model.load().model.weights
    unpacked = run.load().model.weights
    assert [w.path for w in unpacked] == [w.path for w in original]
    for mine, theirs in zip(unpacked, original):
        expected = theirs.numpy().astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(mine.numpy(), expected)
    assert run.load().preprocessing.tokenizers["text"].vocabulary == (
        language_model.load().preprocessing.tokenizers["text"].vocabulary
    )
    manifest = json.loads((search / "tiny" / presets.MANIFEST).read_text())
    assert manifest["weights"]["sha256"] == presets.sha256(search / "tiny" / presets.WEIGHTS)
    assert manifest["parameters"] == sum(int(np.prod(w.shape)) for w in original)
    assert manifest["config"]["model"]["units"] == 12 and manifest["version"] == 3


def test_the_backward_model_keeps_the_forward_models_word_vectors_and_unpacks_beside_it(
    language_model, backward_model, search
):
    forward, backward = language_model.load(), backward_model.load()
    assert backward.config.model.direction == "backward"
    # started from the forward run: its tokeniser and shape, whatever the config asked
    assert backward.preprocessing.tokenizers["text"].vocabulary == forward.preprocessing.tokenizers["text"].vocabulary
    np.testing.assert_array_equal(backward.model.embedding.get_weights()[0], forward.model.embedding.get_weights()[0])
    # its GRU trained away from the forward one it started from
    assert not np.allclose(backward.model.grus[0].get_weights()[0], forward.model.grus[0].get_weights()[0])
    unpacked = runs.Run.open(presets.run_dir("tiny", "backward"))
    assert unpacked.path != presets.run_dir("tiny") and unpacked.path.name.endswith("-backward")
    for mine, theirs in zip(unpacked.load().model.weights, backward.model.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy().astype(np.float16).astype(np.float32))
    preset = presets.get("tiny")
    assert preset.describe()["directions"] == "forward + backward"
    packed_backward = search / "tiny" / presets.BACKWARD_WEIGHTS
    assert preset.manifest["backward"]["weights"]["sha256"] == presets.sha256(packed_backward)


def test_pack_refuses_a_backward_model_of_another_direction_or_tokeniser(language_model, backward_model, tmp_path):
    with pytest.raises(presets.PresetError, match="is a forward language model; the preset's backward model"):
        presets.pack(language_model, tmp_path / "a", **_about(), backward=language_model)
    with pytest.raises(presets.PresetError, match="is a backward language model; the preset's forward model"):
        presets.pack(backward_model, tmp_path / "b", **_about())
    other = nlptool.train(
        "language-model",
        tmp_path / "other",
        train=LINES[:6],
        validation=LINES[:2],
        overrides=[*LM, *BACKWARD, "tokenizer.vocab_size=12"],
        verbose=0,
    )
    with pytest.raises(presets.PresetError, match="has another tokeniser than"):
        presets.pack(language_model, tmp_path / "c", **_about(), backward=other)
    assert not (tmp_path / "c").exists()


def test_the_unpacked_preset_generates_what_the_run_generates_with_float16_weights(language_model, search):
    run = nlptool.load("preset:tiny")
    trained = language_model.load()
    for variable in trained.model.weights:  # the run's own model, rounded as the preset is
        variable.assign(variable.numpy().astype(np.float16).astype(np.float32))
    options = {"max_new_tokens": 6, "temperature": 1.0, "seed": 3}
    assert run.predict(["the film"], **options) == language_model.predict(["the film"], **options)


def test_a_preset_is_unpacked_once(search):
    first = presets.run_dir("tiny")
    stamp = (first / runs.CHECKPOINT).stat().st_mtime_ns
    assert presets.run_dir("preset:tiny") == first
    assert (first / runs.CHECKPOINT).stat().st_mtime_ns == stamp
    assert first.parent.name == "presets" and first.name.startswith("tiny-v3-")


def test_damaged_weights_are_refused_and_nothing_is_left_in_the_cache(search, tmp_path, monkeypatch):
    damaged = tmp_path / "damaged"
    (damaged / "tiny").mkdir(parents=True)
    for name in (presets.MANIFEST, presets.WEIGHTS, "tokenizer.json"):
        (damaged / "tiny" / name).write_bytes((search / "tiny" / name).read_bytes())
    weights = damaged / "tiny" / presets.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(presets, "SEARCH_PATH", [damaged])
    with pytest.raises(presets.PresetError, match=r"weights.npz is damaged: its SHA-256 is [0-9a-f]{64}"):
        nlptool.load("preset:tiny")
    assert not (tmp_path / "cache" / "presets").exists() or not any((tmp_path / "cache" / "presets").iterdir())


def test_an_unknown_preset_is_refused_with_the_known_ones(search):
    with pytest.raises(presets.PresetError, match=r"There is no preset 'huge'; the presets are \['tiny'\]"):
        nlptool.load("preset:huge")


def test_pack_refuses_a_folder_with_files_and_a_run_of_another_task(language_model, packed, tmp_path):
    with pytest.raises(presets.PresetError, match="is not empty"):
        presets.pack(language_model, packed / "tiny", **_about())
    classifier = nlptool.train(
        "sentiment", tmp_path / "clf", train=_frame(), overrides=["model.units=4", "training.epochs=1"], verbose=0
    )
    with pytest.raises(presets.PresetError, match="is a sentiment run; a preset is made from a language-model run"):
        presets.pack(classifier, tmp_path / "other", **_about())


@pytest.mark.parametrize("flag", ["init_from", "init_encoder_from"])
def test_a_classifier_starts_from_the_presets_embedding_and_gru(search, tmp_path, flag):
    """At a learning rate of 0 the classifier keeps what it started from: the preset's embedding and GRU."""
    overrides = ["training.learning_rate=0", "training.epochs=1", "model.layers=1"]
    run = nlptool.train(
        "sentiment", tmp_path / "clf", train=_frame(), overrides=overrides, verbose=0, **{flag: "preset:tiny"}
    )
    preset = nlptool.load("preset:tiny").load()
    model = run.load().model
    np.testing.assert_array_equal(
        model.get_layer("embedding").get_weights()[0], preset.model.embedding.get_weights()[0]
    )
    forward = model.get_layer("bidirectional_0").forward_layer
    for mine, theirs in zip(forward.get_weights(), preset.model.grus[0].get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    backward = model.get_layer("bidirectional_0").backward_layer  # from the preset's backward model
    preset_backward = runs.Run.open(presets.run_dir("tiny", "backward")).load()
    for mine, theirs in zip(backward.get_weights(), preset_backward.model.grus[0].get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert run.config.model.embedding_dim == 8 and run.config.model.units == 12
    assert run.config.tokenizer.vocab_size == preset.preprocessing.tokenizers["text"].vocabulary_size()
    assert json.loads((run.path / runs.RUN_FILE).read_text())["options"][flag] == "preset:tiny"


def test_the_command_line_lists_presets_and_trains_from_one(search, tmp_path, capsys):
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    assert "preset:tiny" in listed and "24 lines" in listed and "test text" in listed
    assert "language models: forward + backward" in listed
    data = tmp_path / "reviews.csv"
    data.write_text(
        "text,label\n" + "\n".join(f"{text},{label}" for text, label in zip(REVIEWS["text"], REVIEWS["label"]))
    )
    args = ["train", "sentiment", "--train-file", str(data), "--run-dir", str(tmp_path / "run")]
    settings = ["--set", "training.epochs=1", "--set", "model.layers=1"]
    assert main([*args, "--init-from", "preset:tiny", *settings]) == 0
    assert runs.Run.open(tmp_path / "run").config.model.units == 12
    capsys.readouterr()
    args[-1] = str(tmp_path / "other")
    assert main([*args, "--init-from", "preset:nothing", *settings]) == 2
    assert "There is no preset 'nothing'" in capsys.readouterr().err


def test_a_classifier_cannot_start_from_a_backward_language_model(backward_model, tmp_path):
    with pytest.raises(UsageError, match="is a backward language model; start from a forward one"):
        nlptool.train("sentiment", tmp_path / "clf", train=_frame(), init_from=str(backward_model.path), verbose=0)


def test_a_language_model_continues_from_a_preset_with_its_tokeniser_and_weights(search, tmp_path):
    """`--init-from` on the language-model task: at a learning rate of 0 the run is the preset."""
    args = ["train", "language-model", "--run-dir", str(tmp_path / "lm"), "--init-from", "preset:tiny"]
    text = tmp_path / "mine.txt"
    text.write_text("\n".join(LINES[:8]) + "\n")
    settings = ["--set", "training.learning_rate=0", "--set", "training.epochs=1", "--set", "model.units=99"]
    assert main([*args, "--train-file", str(text), *settings]) == 0
    run, preset = runs.Run.open(tmp_path / "lm").load(), nlptool.load("preset:tiny").load()
    assert run.config.model.units == 12  # the preset's shape, not the flag's
    for mine, theirs in zip(run.model.weights, preset.model.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_an_untied_model_starts_from_a_tied_one_and_not_the_other_way(language_model, tmp_path):
    untied = nlptool.train(
        "language-model",
        tmp_path / "untied",
        train=LINES,
        validation=LINES[:4],
        overrides=[*LM, "model.tie_weights=false", "training.learning_rate=0"],
        init_from=str(language_model.path),
        verbose=0,
    )
    prompt = {"max_new_tokens": 5, "temperature": 1.0, "seed": 2}  # the same distributions: the same samples
    assert untied.predict(["the film"], **prompt) == language_model.predict(["the film"], **prompt)
    with pytest.raises(UsageError, match="has a softmax of its own, not tied to its embedding"):
        nlptool.train("language-model", tmp_path / "tied", train=LINES, overrides=LM, init_from=str(untied.path))
    assert not (tmp_path / "tied").exists()


def test_a_classifier_cannot_start_from_an_export(language_model, tmp_path):
    export = language_model.export(tmp_path / "export")
    with pytest.raises(RunError, match="is an export; start from a run directory or a preset"):
        nlptool.train("sentiment", tmp_path / "clf", train=_frame(), init_from=str(export), verbose=0)


def test_the_shipped_presets_match_their_checksums():
    shipped = presets.names()
    assert presets.DEFAULT in shipped
    for name in shipped:
        preset = presets.get(name)
        assert presets.sha256(preset.folder / presets.WEIGHTS) == preset.sha256, name
        for direction in ("forward", "backward") if preset.has_backward else ("forward",):
            entry = preset.model(direction)
            assert presets.sha256(preset.folder / entry["weights"]["file"]) == entry["weights"]["sha256"], name
            metrics = entry["metrics"]
            # float16 weights lose nothing measurable: validation perplexity within 0.5 % of float32's
            assert metrics["validation_perplexity_float16"] == pytest.approx(metrics["validation_perplexity"], rel=5e-3)


def _frame():
    import pandas as pd

    return pd.DataFrame(REVIEWS)


def _about():
    return dict(
        name="x",
        version=1,
        description="",
        corpus=[],
        licences="",
        corpus_summary="",
        build_command="",
        metrics={"validation_perplexity": 1.0},
    )
