"""Pre-trained starting points: named, versioned language models that a task starts from.

A preset is a trained nlptool language model (tokeniser, embedding, GRU
layers, tied softmax) packed small: `preset.json` (what it is, the corpus
and its licences, the config, perplexities, the checksum of the weights),
`weights.npz` (every weight in float16, by its position in
`model.weights`) and the tokeniser's files. The default preset ships in
this package (`nlptool/presets/<name>/`, package data), so that a machine
without network has it.

`run_dir("english-small")` (or the spec "preset:english-small") gives a
language-model run directory made from it: on first use the weights are
checked against their SHA-256, widened to float32 and written as a run's
checkpoint under the cache (`NLPTOOL_CACHE_DIR`, else
`~/.cache/nlptool`), in a temporary folder renamed into place, so that
an interrupted first use leaves nothing half-written. Everything that
takes a run directory then takes a preset: `nlptool.load("preset:NAME")`
(a language-model `Run`), `nlptool train sentiment --init-from
preset:NAME`.

`pack(run, folder, ...)` writes a preset from a language-model run;
`python -m nlptool.presets.build NAME` trains and packs a registered one.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from nlptool.errors import NlptoolError

PREFIX = "preset:"
MANIFEST = "preset.json"
WEIGHTS = "weights.npz"
DEFAULT = "english-small"
# where presets are looked for, in order: the package's own folder (tests add theirs)
SEARCH_PATH = [Path(__file__).resolve().parent]


class PresetError(NlptoolError, ValueError):
    """An unknown preset, or a preset whose files are missing or damaged."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One preset, as its manifest describes it."""

    name: str
    version: int
    folder: Path
    manifest: dict

    @property
    def sha256(self) -> str:
        return self.manifest["weights"]["sha256"]

    def describe(self) -> dict:
        """The row of `nlptool presets`."""
        m = self.manifest
        return {
            "name": self.name,
            "version": self.version,
            "parameters": m["parameters"],
            "size_mb": round((self.folder / WEIGHTS).stat().st_size / 2**20, 1),
            "vocabulary": m["vocabulary"],
            "corpus": m["corpus_summary"],
            "validation_perplexity": m["metrics"]["validation_perplexity"],
            "licences": m["licences"],
        }


def is_preset(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def names() -> list[str]:
    """The names of the presets found on the search path."""
    found = []
    for folder in SEARCH_PATH:
        found += [entry.parent.name for entry in sorted(Path(folder).glob(f"*/{MANIFEST}"))]
    return sorted(set(found))


def read(folder) -> Preset:
    """The preset packed in `folder` (named after it)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return Preset(folder.name, int(manifest["version"]), folder, manifest)


def get(name: str) -> Preset:
    """The preset `name` ("english-small" or "preset:english-small"); PresetError naming those there are."""
    name = name[len(PREFIX) :] if is_preset(name) else name
    for folder in SEARCH_PATH:
        if (Path(folder) / name / MANIFEST).is_file():
            return read(Path(folder) / name)
    raise PresetError(f"There is no preset {name!r}; the presets are {names()} (see `nlptool presets`).")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    from nlptool.data.datasets import cache_dir as data_cache

    return data_cache() / "presets"


def run_dir(name: str) -> Path:
    """A language-model run directory holding the preset `name`, made on first use (see the module docstring)."""
    preset = get(name)
    target = cache_dir() / f"{preset.name}-v{preset.version}-{preset.sha256[:12]}"
    if (target / "training.json").is_file():
        return target
    weights_path = preset.folder / WEIGHTS
    if not weights_path.is_file():
        raise PresetError(f"Preset {preset.name!r} has no {WEIGHTS} in {preset.folder}: reinstall nlptool.")
    actual = sha256(weights_path)
    if actual != preset.sha256:
        raise PresetError(
            f"{weights_path} is damaged: its SHA-256 is {actual}, the preset's manifest says {preset.sha256}. "
            "Reinstall nlptool (or rebuild the preset)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        unpack(preset, staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first: theirs is the same
            if not (target / "training.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def unpack(preset: Preset, folder: Path) -> None:
    """Write `preset` into the empty `folder` as a finished language-model run (its weights unchecked:
    `run_dir` checks them first)."""
    import numpy as np

    from nlptool import config as config_lib
    from nlptool import runs, tasks
    from nlptool.files import write_json
    from nlptool.tasks.base import DataSource, Preprocessing

    task = tasks.get("language-model")
    config = config_lib.from_dict(task.config_class, preset.manifest["config"])
    source = DataSource(in_memory=True, fingerprint=f"{PREFIX}{preset.name}")
    run, _ = runs.Run.create(folder, task, config, source, {"preset": preset.name, "version": preset.version})
    for name in preset.manifest["tokenizer_files"]:
        shutil.copyfile(preset.folder / name, folder / name)
    model = task.build_model(config, Preprocessing.load(folder, task.tokenizer_folders))
    with np.load(preset.folder / WEIGHTS) as arrays:
        values = [arrays[f"{i:04d}"] for i in range(len(arrays.files))]
    if len(values) != len(model.weights):
        raise PresetError(f"{preset.folder / WEIGHTS} holds {len(values)} arrays; the model has {len(model.weights)}.")
    for variable, value in zip(model.weights, values):
        variable.assign(value.astype(variable.dtype))
    (folder / runs.CHECKPOINT).parent.mkdir(parents=True)
    model.save_weights(folder / runs.CHECKPOINT)
    config_lib.save_yaml(config, folder / runs.CONFIG_FILE)
    write_json(folder / runs.TRAINING_FILE, {"preset": preset.name, "version": preset.version})


def pack(run, folder, *, name, version, description, corpus, licences, corpus_summary, build_command, metrics):
    """Write the preset `name` of the trained language-model `run` (a Run or
    its path) into the new or empty `folder`: float16 weights, the tokeniser,
    and a manifest with their checksum and what the caller says of the data."""
    import numpy as np

    from nlptool import config as config_lib
    from nlptool import runs
    from nlptool.files import write_atomically, write_json
    from nlptool.tokenizers.files import TOKENIZER_FILE

    run = runs.Run.open(run) if not isinstance(run, runs.Run) else run
    if run.task.name != "language-model":
        raise PresetError(f"{run.path} is a {run.task.name} run; a preset is made from a language-model run.")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise PresetError(f"{folder} is not empty: a preset is written into a new or empty folder.")
    trained = run.load()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_files = [TOKENIZER_FILE]  # the language model's one tokeniser, at the top of its run
    shutil.copyfile(run.path / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    arrays = {f"{i:04d}": variable.numpy().astype(np.float16) for i, variable in enumerate(trained.model.weights)}
    write_atomically(folder / WEIGHTS, lambda handle: np.savez_compressed(handle, **arrays), binary=True)
    write_json(
        folder / MANIFEST,
        {
            "name": name,
            "version": version,
            "task": "language-model",
            "description": description,
            "corpus": corpus,
            "corpus_summary": corpus_summary,
            "licences": licences,
            "config": config_lib.to_dict(trained.config),
            "vocabulary": trained.preprocessing.tokenizers["text"].vocabulary_size(),
            "parameters": int(sum(int(np.prod(v.shape)) for v in trained.model.weights)),
            "tokenizer_files": tokenizer_files,
            "weights": {"file": WEIGHTS, "dtype": "float16", "sha256": sha256(folder / WEIGHTS)},
            "metrics": metrics,
            "build_command": build_command,
        },
    )
    return folder


def set_metrics(folder, **values):
    """Add `values` to the metrics in the manifest of the preset in `folder` (the weights stay as packed)."""
    from nlptool.files import write_json

    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["metrics"].update(values)
    write_json(path, manifest)
