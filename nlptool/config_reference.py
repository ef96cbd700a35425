"""The reference of every config key, read from the config classes themselves.

A key's meaning is the comment written beside its field (on the same line,
or on the lines just above it), in the class that declares it or, when a
task redeclares a field only to change its default, in the base class. So
the reference cannot drift from the code; `docs/configuration.md` is this
module's output, and a test fails when it is stale:

    python -m nlptool.config_reference docs/configuration.md
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import types
import typing
from functools import cache
from pathlib import Path

HEADER = """# Configuration reference

Every key of every task's config, with its type, default, allowed values
and meaning. A config is resolved in layers, later ones winning: the
defaults below, then the YAML files given with `--config` (a shipped
config by name, see `nlptool configs`, or a file of yours), then `--set
section.key=value` overrides. The resolved config of a run is written to
its `config.yaml`. Unknown keys and values of the wrong type or out of range
are refused before anything is written.

Generated from the config classes by `python -m nlptool.config_reference
docs/configuration.md`; do not edit by hand.
"""


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One config key: its dotted name, type, default, allowed range and meaning."""

    key: str
    type: str
    default: str
    allowed: str
    meaning: str


@cache
def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment beside its declaration in `cls`'s own source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing: dict[int, str] = {}  # line number (1-based) -> comment text
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            trailing[token.start[0]] = token.string.lstrip("#").strip()
    body = ast.parse(source).body[0]  # config classes are top-level: their source parses as it is
    found = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        parts: list[str] = []
        above = node.lineno - 1
        while above >= 1 and lines[above - 1].strip().startswith("#"):
            parts.insert(0, trailing.get(above, ""))
            above -= 1
        if node.lineno in trailing and not lines[node.lineno - 1].strip().startswith("#"):
            parts.append(trailing[node.lineno])
        text = " ".join(part for part in parts if part and not part.startswith(("fmt:", "type: ignore")))
        if text:
            found[node.target.id] = text
    return found


def _meaning(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}) and name in _comments(klass):
            return _comments(klass)[name]
    return ""


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{arg!r}`".replace("'", '"') for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if arg is type(None) else _type_name(arg) for arg in args)
    if origin is not None:
        inner = ", ".join(_type_name(arg) for arg in args if arg is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "(required)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float) and (abs(value) >= 1e4 or 0 < abs(value) < 1e-3):
        return f"`{value:g}`"
    return f"`{value!r}`"


def keys(config_class: type, prefix: str = "") -> list[KeyDoc]:
    """Every key of `config_class` (a config dataclass), nested sections flattened to dotted names."""
    hints = typing.get_type_hints(config_class)
    bounds = config_class.bounds() if hasattr(config_class, "bounds") else {}
    found = []
    for field in dataclasses.fields(config_class):
        annotation = hints[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(annotation):
            found.extend(keys(annotation, key + "."))  # type: ignore[arg-type]  # a dataclass type here
            continue
        allowed = str(bounds[field.name]) if field.name in bounds else ""
        found.append(KeyDoc(key, _type_name(annotation), _default(field), allowed, _meaning(config_class, field.name)))
    return found


def markdown() -> str:
    """The whole reference, one section a task, as docs/configuration.md holds it."""
    from nlptool import tasks

    out = [HEADER]
    for name in tasks.names():
        task = tasks.get(name)
        out.append(f"## {name}\n")
        out.append(f"`nlptool train {name} --set KEY=VALUE`; the config class is `{task.config_class.__module__}."
                   f"{task.config_class.__qualname__}`.\n")  # fmt: skip
        out.append("| key | type | default | allowed | meaning |")
        out.append("|---|---|---|---|---|")
        for doc in keys(task.config_class):
            meaning = doc.meaning.replace("|", "\\|")
            out.append(f"| `{doc.key}` | {doc.type} | {doc.default} | {doc.allowed} | {meaning} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m nlptool.config_reference OUT.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(markdown(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
