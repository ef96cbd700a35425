"""Typed configuration for the task recipes.

A config is a (nested) `@dataclasses.dataclass` with typed fields and
defaults; this module holds the generic machinery, the recipes define their
own dataclasses. A config is resolved in layers, later ones winning:

    defaults of the dataclass  <  YAML files, left to right  <  --set overrides

    config = resolve(TaskConfig, ["base.yaml", "small.yaml"], ["model.units=128"])
    save_yaml(config, "run/config.yaml")      # what the run actually used

YAML files are deep-merged (a file that sets `model.units` keeps the other
keys of `model`); lists are replaced whole. Overrides are "dotted.key=value"
strings whose value is parsed by `yaml.safe_load`, so `3` is an int, `0.5` a
float, `true` a bool, `[1, 2]` a list and `null` None.

Values are checked against the field annotations: int, float (an int is
accepted, as is a string such as "1e-3" that PyYAML leaves unparsed), bool
(True/False or the strings "true"/"false"), str, Optional[X] / X | None,
list[X], tuple[X, ...], tuple[X, Y], dict[K, V], Literal[...] and nested
dataclasses. Every mistake raises `ConfigError` (a ValueError) naming the
dotted key, where it came from (a file, `--set` or the defaults), what was
expected and what was received.
"""

import contextlib
import copy
import dataclasses
import datetime
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from nlptool.errors import NlptoolError
from nlptool.files import write_atomically

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# a config: an instance of a dataclass
ConfigT = TypeVar("ConfigT", bound="DataclassInstance")

OVERRIDES_SOURCE = "--set"  # how errors in overrides name their origin
# floats PyYAML (YAML 1.1) leaves as strings, such as "1e-3": YAML 1.2 float syntax
_FLOAT_TEXT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


class ConfigError(NlptoolError, ValueError):
    """A problem with a configuration: a bad file, key, value or override."""


# --- public API ---
def from_dict(cls: type[ConfigT], data: Mapping[str, Any] | ConfigT, where: str = "config") -> ConfigT:
    """Build the dataclass `cls` from a plain (nested) dict, checking every key
    and value; `where` names the source in error messages."""
    _check_dataclass(cls)
    return _build(cls, data, "", where, complete=True)


def to_dict(obj: "DataclassInstance") -> dict[str, Any]:
    """The dataclass instance `obj` as plain YAML-safe types (dicts, lists,
    str, int, float, bool, None); tuples become lists. Keys keep field order."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"Expected a dataclass instance for argument `obj`, got {_show(obj)}.")
    return _plain(obj, "")


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the dict `data` with "dotted.key=value" `overrides` applied in
    order. Values are parsed with `yaml.safe_load`; missing intermediate
    mappings are created. Keys are not checked here but by `from_dict`."""
    if isinstance(overrides, str):
        raise TypeError(f"Expected a list of strings for argument `overrides`, got a single string {overrides!r}.")
    result = copy.deepcopy(dict(data))
    for override in overrides:
        if not isinstance(override, str):
            raise ConfigError(f"Invalid override in {OVERRIDES_SOURCE}: expected a string, got {_show(override)}.")
        key, equals, text = override.partition("=")
        if not equals:
            raise ConfigError(
                f"Invalid override {override!r} in {OVERRIDES_SOURCE}: expected `dotted.key=value`, got no `=`."
            )
        parts = [part.strip() for part in key.split(".")]
        if not all(parts):
            raise ConfigError(
                f"Invalid override {override!r} in {OVERRIDES_SOURCE}: expected `dotted.key=value`, "
                f"got an empty key{'' if not key.strip() else ' part in ' + repr(key.strip())}."
            )
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"Invalid override {override!r} in {OVERRIDES_SOURCE}: the value is not valid YAML "
                f"({getattr(error, 'problem', None) or error})."
            ) from None
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"Invalid override {override!r} in {OVERRIDES_SOURCE}: `{'.'.join(parts[: depth + 1])}` "
                    f"is {child!r}, not a mapping of keys."
                )
            node = child
        node[parts[-1]] = value
    return result


def resolve(
    cls: type[ConfigT],
    config_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] = (),
    overrides: str | Iterable[str] = (),
    base: ConfigT | None = None,
) -> ConfigT:
    """The config `cls` from its defaults (or the instance `base`), then the
    YAML files `config_paths` deep-merged left to right, then the `overrides`.

    Each layer is validated on its own, so an error names the file (or
    `--set`) that introduced it.
    """
    _check_dataclass(cls)
    if isinstance(config_paths, (str, os.PathLike)):
        config_paths = [config_paths]
    if isinstance(overrides, str):
        overrides = [overrides]
    if base is None:
        data, source = _defaults(cls), f"the defaults of {cls.__name__}"
    elif isinstance(base, cls):
        data, source = to_dict(base), f"argument `base` ({cls.__name__})"
    else:
        raise TypeError(f"Expected None or a {cls.__name__} for argument `base`, got {_show(base)}.")
    layers = [(data, source)]
    for path in config_paths:
        data = _merge(data, _read_yaml(path))
        layers.append((data, str(path)))
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(data, overrides)
        layers.append((data, OVERRIDES_SOURCE))
    for layer, where in layers[:-1]:
        _build(cls, layer, "", where, complete=False)
    return from_dict(cls, data, where=layers[-1][1])


def load_yaml(cls: type[ConfigT], *paths: str | os.PathLike[str]) -> ConfigT:
    """The config `cls` from its defaults and the YAML files `paths`,
    deep-merged left to right (the rightmost wins)."""
    return resolve(cls, paths)


def save_yaml(obj: "DataclassInstance", path: str | os.PathLike[str]) -> Path:
    """Write the config `obj` to `path` as YAML, in field order, atomically:
    a temporary file in the same directory replaces `path` only once complete,
    so an interrupted save leaves any previous file intact. Returns the path."""
    data = to_dict(obj)
    return write_atomically(
        path,
        lambda stream: yaml.safe_dump(data, stream, sort_keys=False, allow_unicode=True, default_flow_style=False),
    )


# --- building ---
def _build(cls, data, prefix, where, complete):
    """`cls` from the mapping `data` at dotted key `prefix`. With
    complete=False (an intermediate layer) keys and values are checked but
    required fields may be missing and a dict of checked values is returned."""
    if isinstance(data, cls):
        data = to_dict(data)
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"Invalid value for {_name(prefix)} in {where}: expected a mapping of keys ({cls.__name__}), "
            f"got {_show(data)}."
        )
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    for key in data:
        if key not in fields:
            level = f"valid keys of `{prefix}`" if prefix else "valid keys"
            raise ConfigError(f"Unknown key `{_join(prefix, key)}` in {where}; {level}: {', '.join(sorted(fields))}.")
    hints = _hints(cls)
    values = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in data:
            values[name] = _coerce(hints[name], data[name], key, where, complete)
        elif complete and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"Missing key `{key}` in {where}: `{cls.__name__}.{name}` has no default.")
    if not complete:
        return values
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # raised by a __post_init__ check
        raise ConfigError(f"Invalid value for {_name(prefix)} in {where}: {error}") from error


def _coerce(tp, value, key, where, complete):
    """`value` checked against the annotation `tp`, converted where lossless."""
    if tp is typing.Any or tp is object:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, key, where, complete)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        raise _invalid(tp, value, key, where)
    if origin is typing.Union or origin is types.UnionType:
        arms = [arm for arm in args if arm is not type(None)]
        if value is None and len(arms) < len(args):
            return None
        if len(arms) == 1:  # Optional[X]: let X report the detailed error
            return _coerce(arms[0], value, key, where, complete)
        for arm in arms:
            with contextlib.suppress(ConfigError):
                return _coerce(arm, value, key, where, complete)
        raise _invalid(tp, value, key, where)
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _invalid(tp, value, key, where)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(
                    f"Invalid value for `{key}` in {where}: expected {_describe(tp)}, "
                    f"got {len(value)} items: {_short(value)}."
                )
            items = [
                _coerce(arm, item, f"{key}[{i}]", where, complete) for i, (arm, item) in enumerate(zip(args, value))
            ]
        else:
            arm = args[0] if args else typing.Any
            items = [_coerce(arm, item, f"{key}[{i}]", where, complete) for i, item in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise _invalid(tp, value, key, where)
        key_type, value_type = args if args else (typing.Any, typing.Any)
        return {
            _coerce(key_type, k, f"{key} (key {k!r})", where, complete): _coerce(
                value_type, v, _join(key, k), where, complete
            )
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _invalid(tp, value, key, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise _invalid(tp, value, key, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        raise _invalid(tp, value, key, where)
    if tp is str:
        if isinstance(value, str):
            return str(value)
        hint = "; quote it to keep it a string" if isinstance(value, (bool, int, float, datetime.date)) else ""
        raise ConfigError(f"Invalid value for `{key}` in {where}: expected str, got {_show(value)}{hint}.")
    if tp is type(None):
        if value is None:
            return None
        raise _invalid(tp, value, key, where)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _invalid(tp, value, key, where)
    raise TypeError(f"Unsupported annotation {tp!r} for config key `{key}`.")


def _hints(cls):
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as error:
        raise TypeError(f"Cannot resolve the field annotations of {cls.__name__}: {error}") from error


def _defaults(cls):
    """The defaults of `cls` as a plain dict; required nested dataclasses
    contribute their own defaults, other required fields are left out."""
    hints = _hints(cls)
    data = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            data[field.name] = _plain(field.default, field.name)
        elif field.default_factory is not dataclasses.MISSING:
            data[field.name] = _plain(field.default_factory(), field.name)
        elif isinstance(hints[field.name], type) and dataclasses.is_dataclass(hints[field.name]):
            data[field.name] = _defaults(hints[field.name])
    return data


def _plain(value, key):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name), _join(key, field.name))
            for field in dataclasses.fields(value)
            if field.init
        }
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: _plain(v, _join(key, k)) for k, v in value.items()}
    if value is None:
        return None
    for kind in (bool, int, float, str):  # plain types: subclasses trip yaml.safe_dump
        if isinstance(value, kind):
            return kind(value)
    raise ConfigError(
        f"Cannot write `{key}` as YAML: expected None, bool, int, float, str, a list, a mapping or a dataclass, "
        f"got {_show(value)}."
    )


# --- YAML files ---
def _read_yaml(path):
    """The top-level mapping of the YAML file `path` ({} for an empty file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"Config file {path} is a directory, expected a YAML file.") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"Config file {path} is not UTF-8 text (byte {error.start}).") from None
    except OSError as error:
        raise ConfigError(f"Cannot read config file {path}: {error.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        position = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"Invalid YAML in config file {path}{position}: {problem}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file {path} must hold a mapping of keys at the top level, got {type(data).__name__}: "
            f"{_short(data)}."
        )
    return data


def _merge(base, update):
    """`update` deep-merged into a copy of `base`: mappings merge, anything else is replaced."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# --- messages ---
def _check_dataclass(cls):
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"Expected a dataclass type for argument `cls`, got {_show(cls)}.")


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else str(key)


def _name(prefix):
    return f"`{prefix}`" if prefix else "the top level"


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value):
    return f"{_short(value)} ({type(value).__name__})"


def _describe(tp):
    """A readable name for the annotation `tp`."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping of keys ({tp.__name__})"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in args)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(arm) for arm in args)
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} items ({', '.join(_describe(arm) for arm in args)})"
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    if tp is type(None):
        return "None"
    if tp in (list, tuple):
        return "a list"
    if tp is dict:
        return "a mapping"
    return getattr(tp, "__name__", repr(tp))


def _invalid(tp, value, key, where):
    return ConfigError(f"Invalid value for `{key}` in {where}: expected {_describe(tp)}, got {_show(value)}.")
