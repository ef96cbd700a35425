"""nlptool.config: typed dataclass configs from defaults, YAML files and --set overrides."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # `import nlptool` loads TensorFlow

import dataclasses
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from nlptool import config as cfg
from nlptool.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_yaml,
    resolve,
    save_yaml,
    to_dict,
)


@dataclasses.dataclass
class ModelConfig:
    kind: Literal["gru", "lstm"] = "gru"
    units: int = 64
    layers: list[int] = dataclasses.field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    bidirectional: bool = False


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 32
    window: tuple[int, ...] = (2, 3)
    checkpoint: Optional[str] = None  # noqa: UP045 -- typing.Optional is supported as well as `X | None`
    seed: int | None = 0


@dataclasses.dataclass
class TaskConfig:
    name: str = "classify"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    labels: list[str] = dataclasses.field(default_factory=list)
    pair: tuple[str, int] = ("a", 1)


@dataclasses.dataclass
class Required:
    path: str
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def message(excinfo):
    return str(excinfo.value)


# --- defaults and from_dict ---
def test_defaults():
    config = resolve(TaskConfig)
    assert config == TaskConfig()
    assert config.model.units == 64 and config.model.layers == [64, 32]
    assert config.training.window == (2, 3) and config.training.checkpoint is None
    assert from_dict(TaskConfig, {}) == TaskConfig()
    assert load_yaml(TaskConfig) == TaskConfig()


def test_from_dict_builds_nested_configs_and_coerces_values():
    config = from_dict(
        TaskConfig,
        {
            "model": {"units": 8, "dropout": 0, "bidirectional": "True", "layers": (1, 2)},
            "training": {"window": [4, 5, 6], "learning_rate": "1e-4"},
            "pair": ["b", 2],
        },
    )
    assert isinstance(config.model, ModelConfig) and isinstance(config.training, TrainingConfig)
    assert config.model.units == 8
    assert config.model.dropout == 0.0 and type(config.model.dropout) is float
    assert config.model.bidirectional is True
    assert config.model.layers == [1, 2] and type(config.model.layers) is list
    assert config.training.window == (4, 5, 6) and type(config.training.window) is tuple
    assert config.training.learning_rate == pytest.approx(1e-4)
    assert config.pair == ("b", 2)
    assert config.training.epochs == 3  # untouched keys keep their defaults


def test_to_dict_gives_plain_types_in_field_order_and_round_trips():
    config = TaskConfig(name="x", labels=["pos", "neg"], training=TrainingConfig(window=(7,), checkpoint="ck"))
    data = to_dict(config)
    assert list(data) == ["name", "model", "training", "labels", "pair"]
    assert list(data["model"]) == ["kind", "units", "layers", "dropout", "bidirectional"]
    assert data["training"]["window"] == [7] and data["pair"] == ["a", 1]
    assert yaml.safe_load(yaml.safe_dump(data)) == data
    assert from_dict(TaskConfig, data) == config


def test_to_dict_rejects_values_yaml_cannot_hold():
    config = TaskConfig(name=Path("x"))
    with pytest.raises(ConfigError) as excinfo:
        to_dict(config)
    assert "Cannot write `name` as YAML" in message(excinfo) and "PosixPath" in message(excinfo)
    with pytest.raises(TypeError, match="dataclass instance"):
        to_dict({"name": "x"})


# --- YAML files ---
def test_yaml_files_merge_left_to_right_and_deep(tmp_path):
    first = write(tmp_path / "first.yaml", "model: {units: 128, dropout: 0.3}\ntraining:\n  epochs: 5\nname: first\n")
    second = write(tmp_path / "second.yaml", "model:\n  units: 256\ntraining:\n  batch_size: 8\nlabels: [a, b]\n")
    config = load_yaml(TaskConfig, first, second)
    assert config.model.units == 256  # rightmost wins
    assert config.model.dropout == 0.3  # deep merge keeps the first file's other keys
    assert config.model.layers == [64, 32]  # and the defaults
    assert config.training.epochs == 5 and config.training.batch_size == 8
    assert config.name == "first" and config.labels == ["a", "b"]
    reverse = load_yaml(TaskConfig, second, first)
    assert reverse.model.units == 128


def test_empty_yaml_file_means_defaults(tmp_path):
    assert load_yaml(TaskConfig, write(tmp_path / "empty.yaml", "# nothing\n")) == TaskConfig()


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_yaml(TaskConfig, tmp_path / "nope.yaml")
    assert message(excinfo) == f"Config file {tmp_path / 'nope.yaml'} does not exist."


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "model:\n  units: 3\n  layers: [1, 2\nname: x\n")
    with pytest.raises(ConfigError) as excinfo:
        load_yaml(TaskConfig, path)
    text = message(excinfo)
    assert text.startswith(f"Invalid YAML in config file {path}, line 4,")


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError) as excinfo:
        load_yaml(TaskConfig, path)
    assert message(excinfo) == f"Config file {path} must hold a mapping of keys at the top level, got list: [1, 2]."


def test_errors_in_a_file_name_the_file(tmp_path):
    good = write(tmp_path / "good.yaml", "model:\n  units: 8\n")
    bad = write(tmp_path / "bad.yaml", "model:\n  unitz: 8\n")
    with pytest.raises(ConfigError) as excinfo:
        load_yaml(TaskConfig, good, bad)
    assert message(excinfo) == (
        f"Unknown key `model.unitz` in {bad}; valid keys of `model`: bidirectional, dropout, kind, layers, units."
    )
    wrong = write(tmp_path / "wrong.yaml", "training:\n  epochs: many\n")
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, [wrong, good], ["model.units=3"])
    assert message(excinfo) == f"Invalid value for `training.epochs` in {wrong}: expected int, got 'many' (str)."


# --- overrides ---
def test_overrides_of_nested_keys_parse_to_yaml_types(tmp_path):
    path = write(tmp_path / "base.yaml", "model:\n  units: 128\n  dropout: 0.2\ntraining:\n  checkpoint: ck\n")
    config = resolve(
        TaskConfig,
        [path],
        [
            "model.units=3",
            "model.dropout=0.5",
            "model.bidirectional=true",
            "model.layers=[1, 2]",
            "model.kind=lstm",
            "training.checkpoint=null",
            "training.learning_rate=1e-4",
            "training.window=[9]",
            "name = tagger",
        ],
    )
    assert config.model.units == 3 and type(config.model.units) is int
    assert config.model.dropout == 0.5 and type(config.model.dropout) is float
    assert config.model.bidirectional is True
    assert config.model.layers == [1, 2]
    assert config.model.kind == "lstm"
    assert config.training.checkpoint is None  # the override beats the file
    assert config.training.learning_rate == pytest.approx(1e-4)
    assert config.training.window == (9,)
    assert config.name == "tagger"
    assert config.training.epochs == 3


def test_apply_overrides_returns_a_new_dict():
    data = {"model": {"units": 1}}
    result = apply_overrides(data, ["model.units=2", "training.epochs=4", "a.b.c=x=y", "model.units=5"])
    assert result == {"model": {"units": 5}, "training": {"epochs": 4}, "a": {"b": {"c": "x=y"}}}
    assert data == {"model": {"units": 1}}
    assert apply_overrides(data, ["model.layers=[1, 2]", "model.units=", "model.kind=null"])["model"] == {
        "units": None,
        "layers": [1, 2],
        "kind": None,
    }


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.units", "Invalid override 'model.units' in --set: expected `dotted.key=value`, got no `=`."),
        ("=3", "Invalid override '=3' in --set: expected `dotted.key=value`, got an empty key."),
        (
            "model..units=3",
            "Invalid override 'model..units=3' in --set: expected `dotted.key=value`, "
            "got an empty key part in 'model..units'.",
        ),
        ("model.units=[1,", "Invalid override 'model.units=[1,' in --set: the value is not valid YAML"),
        (
            "model.units.x=3",
            "Invalid override 'model.units.x=3' in --set: `model.units` is 64, not a mapping of keys.",
        ),
    ],
)
def test_malformed_overrides(override, expected):
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=[override])
    assert message(excinfo).startswith(expected)


def test_unknown_override_key_says_it_came_from_set():
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=["model.unitz=3"])
    assert message(excinfo) == (
        "Unknown key `model.unitz` in --set; valid keys of `model`: bidirectional, dropout, kind, layers, units."
    )
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=["modle.units=3"])
    assert message(excinfo) == "Unknown key `modle` in --set; valid keys: labels, model, name, pair, training."


def test_override_type_errors_say_they_came_from_set():
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=["training.epochs=0.5"])
    assert message(excinfo) == "Invalid value for `training.epochs` in --set: expected int, got 0.5 (float)."
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=["name=no"])  # YAML 1.1 reads `no` as False
    assert message(excinfo) == (
        "Invalid value for `name` in --set: expected str, got False (bool); quote it to keep it a string."
    )
    assert resolve(TaskConfig, overrides=["name='no'"]).name == "no"


# --- type errors ---
@pytest.mark.parametrize(
    "data, expected",
    [
        ({"model": {"unitz": 1}}, "Unknown key `model.unitz` in config; valid keys of `model`: bidirectional, drop"),
        ({"epochs": 1}, "Unknown key `epochs` in config; valid keys: labels, model, name, pair, training."),
        ({"model": {"units": "64"}}, "Invalid value for `model.units` in config: expected int, got '64' (str)."),
        ({"model": {"units": True}}, "Invalid value for `model.units` in config: expected int, got True (bool)."),
        ({"model": {"units": 3.0}}, "Invalid value for `model.units` in config: expected int, got 3.0 (float)."),
        ({"model": {"dropout": False}}, "Invalid value for `model.dropout` in config: expected float, got False"),
        ({"model": {"dropout": "lots"}}, "Invalid value for `model.dropout` in config: expected float, got 'lots'"),
        ({"model": {"bidirectional": 1}}, "Invalid value for `model.bidirectional` in config: expected bool, got 1"),
        ({"model": {"bidirectional": "yes"}}, "`model.bidirectional` in config: expected bool, got 'yes' (str)."),
        ({"model": {"layers": 3}}, "Invalid value for `model.layers` in config: expected a list of int, got 3 (int)."),
        ({"model": {"layers": [1, "x"]}}, "Invalid value for `model.layers[1]` in config: expected int, got 'x'"),
        ({"model": 3}, "Invalid value for `model` in config: expected a mapping of keys (ModelConfig), got 3 (int)."),
        ({"labels": "pos"}, "Invalid value for `labels` in config: expected a list of str, got 'pos' (str)."),
        ({"pair": ["a"]}, "Invalid value for `pair` in config: expected a list of 2 items (str, int), got 1 items"),
        ({"training": {"window": "2,3"}}, "`training.window` in config: expected a list of int, got '2,3' (str)."),
    ],
)
def test_wrong_types_name_key_expected_and_received(data, expected):
    with pytest.raises(ConfigError) as excinfo:
        from_dict(TaskConfig, data)
    assert expected in message(excinfo)


def test_top_level_data_must_be_a_mapping():
    with pytest.raises(ConfigError) as excinfo:
        from_dict(TaskConfig, [1], where="job.yaml")
    assert message(excinfo) == (
        "Invalid value for the top level in job.yaml: expected a mapping of keys (TaskConfig), got [1] (list)."
    )


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(TypeError, match="dataclass type for argument `cls`"):
        from_dict(dict, {})


def test_required_fields():
    with pytest.raises(ConfigError) as excinfo:
        resolve(Required)
    assert message(excinfo) == "Missing key `path` in the defaults of Required: `Required.path` has no default."
    config = resolve(Required, overrides=["path=data.csv", "model.units=2"])
    assert config == Required(path="data.csv", model=ModelConfig(units=2))


# --- Literal and Optional ---
def test_literal_choices():
    assert from_dict(ModelConfig, {"kind": "lstm"}).kind == "lstm"
    with pytest.raises(ConfigError) as excinfo:
        from_dict(TaskConfig, {"model": {"kind": "rnn"}})
    assert message(excinfo) == (
        "Invalid value for `model.kind` in config: expected one of 'gru', 'lstm', got 'rnn' (str)."
    )
    with pytest.raises(ConfigError) as excinfo:
        resolve(TaskConfig, overrides=["model.kind=GRU"])
    assert "in --set: expected one of 'gru', 'lstm', got 'GRU'" in message(excinfo)


def test_literal_compares_types_too():
    @dataclasses.dataclass
    class Heads:
        count: Literal[1, 2] = 1

    assert from_dict(Heads, {"count": 2}).count == 2
    with pytest.raises(ConfigError, match=r"expected one of 1, 2, got True \(bool\)"):
        from_dict(Heads, {"count": True})


def test_optional_fields():
    config = from_dict(TrainingConfig, {"checkpoint": "ck", "seed": None})
    assert config.checkpoint == "ck" and config.seed is None
    assert from_dict(TrainingConfig, {"checkpoint": None}).checkpoint is None
    with pytest.raises(ConfigError) as excinfo:
        from_dict(TrainingConfig, {"checkpoint": 3})
    assert message(excinfo).startswith("Invalid value for `checkpoint` in config: expected str, got 3 (int)")
    with pytest.raises(ConfigError) as excinfo:
        from_dict(TrainingConfig, {"seed": "x"})
    assert message(excinfo) == "Invalid value for `seed` in config: expected int, got 'x' (str)."
    assert resolve(TaskConfig, overrides=["training.seed=null"]).training.seed is None


# --- saving ---
def test_save_and_load_round_trip(tmp_path):
    config = resolve(TaskConfig, overrides=["model.kind=lstm", "training.window=[5, 6]", "labels=[pos, neg]"])
    path = save_yaml(config, tmp_path / "run" / "config.yaml")
    assert path == tmp_path / "run" / "config.yaml"
    assert load_yaml(TaskConfig, path) == config
    text = path.read_text(encoding="utf-8")
    keys = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "-"))]
    assert keys == ["name", "model", "training", "labels", "pair"]  # field order, not sorted
    assert "!!python" not in text
    assert yaml.safe_load(text)["training"]["window"] == [5, 6]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_interrupted_save_keeps_the_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    save_yaml(TaskConfig(name="old"), path)
    before = path.read_text(encoding="utf-8")

    def broken_dump(data, stream=None, **kwargs):
        stream.write("name: new\nmodel:\n  units")
        stream.flush()
        raise OSError("disk full")

    monkeypatch.setattr(cfg.yaml, "safe_dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_yaml(TaskConfig(name="new"), path)
    assert path.read_text(encoding="utf-8") == before
    assert load_yaml(TaskConfig, path).name == "old"
    assert list(tmp_path.iterdir()) == [path]  # the partial temporary file was removed


def test_interrupted_first_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_dump(data, stream=None, **kwargs):
        stream.write("name: half")
        raise KeyboardInterrupt

    monkeypatch.setattr(cfg.yaml, "safe_dump", broken_dump)
    with pytest.raises(KeyboardInterrupt):
        save_yaml(TaskConfig(), tmp_path / "config.yaml")
    assert list(tmp_path.iterdir()) == []
