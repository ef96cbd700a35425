"""The configs nlptool ships, found by name.

Each is a YAML file in this package named `<task>_<name>.yaml` (the task's
name with `_` for `-`), so an installed package finds its own configs:

    nlptool configs                                  # lists them
    nlptool train sentiment --config sst2 ...        # sentiment_sst2.yaml
    nlptool.train("sentiment", "runs/sst2", dataset="sst2", config="sst2")

A `--config` value that names an existing file, or ends in `.yaml` /
`.yml`, is read as a file instead.
"""

import dataclasses
from importlib import resources
from pathlib import Path

from nlptool.errors import UsageError

SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class ShippedConfig:
    """One shipped config: its task, its short name, its file and the first line of its header comment."""

    task: str
    name: str
    path: Path
    summary: str


def _directory() -> Path:
    return Path(str(resources.files(__name__)))


def _summary(path: Path) -> str:
    """The first comment line of a YAML file, without its `#`."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def shipped(task: str | None = None) -> list[ShippedConfig]:
    """The shipped configs (of `task` only, when given), sorted by task and name."""
    from nlptool import tasks

    found = []
    prefixes = {name.replace("-", "_") + "_": name for name in tasks.names()}
    for path in sorted(_directory().glob("*.yaml")):
        for prefix, task_name in prefixes.items():
            if path.stem.startswith(prefix):
                found.append(ShippedConfig(task_name, path.stem[len(prefix) :], path, _summary(path)))
                break
    return [config for config in found if task is None or config.task == task]


def find(name: str | Path, task: str) -> Path:
    """The YAML file that `name` means for `task`: a file path as it is, else a
    shipped config by its short name (`sst2`) or its file stem (`sentiment_sst2`).

    Raises:
        UsageError: `name` is neither a file nor a shipped config of `task`.
    """
    path = Path(name)
    if path.is_file() or path.suffix in SUFFIXES:
        return path
    for config in shipped(task):
        if str(name) in (config.name, config.path.stem):
            return config.path
    names = ", ".join(config.name for config in shipped(task)) or "none"
    raise UsageError(
        f"--config {name!r} is neither a file nor a shipped {task} config (those are: {names}; see `nlptool configs`)."
    )
