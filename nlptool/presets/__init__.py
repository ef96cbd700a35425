"""Pre-trained starting points: named, versioned language models that a task starts from.

A preset is a trained nlptool language model (tokeniser, embedding, GRU
layers, tied softmax) packed small: `preset.json` (what it is, the corpus
and its licences, the config, perplexities, the checksum of the weights),
`weights.npz` (every weight in float16, by its position in
`model.weights`) and the tokeniser's files. The default preset ships in
this package (`nlptool/presets/<name>/`, package data), so that a machine
without network has it.

A preset may also hold a backward language model (`backward.npz`, its
config, checksum and perplexities under "backward" in the manifest): the
same tokeniser and word vectors, its GRU trained on the text read last
word first, for the backward direction of a bidirectional classifier
(ULMFiT fine-tunes a forward and a backward model; so does ELMo's
biLM). The classifiers of `--init-from preset:NAME` take both.

`run_dir("english-small")` (or the spec "preset:english-small") gives a
language-model run directory made from it (`direction="backward"`: from
its backward model): on first use the weights are
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
BACKWARD_WEIGHTS = "backward.npz"
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

    @property
    def has_backward(self) -> bool:
        return "backward" in self.manifest

    def model(self, direction="forward") -> dict:
        """The manifest's entry of one of its models: config, weights (file, dtype, sha256), metrics."""
        if direction == "forward":
            return self.manifest
        if direction == "backward" and self.has_backward:
            return self.manifest["backward"]
        raise PresetError(f"Preset {self.name!r} has no {direction} language model.")

    def describe(self) -> dict:
        """The row of `nlptool presets`."""
        m = self.manifest
        files = [WEIGHTS] + ([BACKWARD_WEIGHTS] if self.has_backward else [])
        return {
            "name": self.name,
            "version": self.version,
            "directions": "forward + backward" if self.has_backward else "forward",
            "parameters": m["parameters"] + (m["backward"]["parameters"] if self.has_backward else 0),
            "size_mb": round(sum((self.folder / name).stat().st_size for name in files) / 2**20, 1),
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


def run_dir(name: str, direction: str = "forward") -> Path:
    """A language-model run directory holding the preset `name`'s forward (or
    backward) model, made on first use (see the module docstring)."""
    preset = get(name)
    entry = preset.model(direction)
    suffix = "" if direction == "forward" else f"-{direction}"
    target = cache_dir() / f"{preset.name}-v{preset.version}-{entry['weights']['sha256'][:12]}{suffix}"
    if (target / "training.json").is_file():
        return target
    weights_path = preset.folder / entry["weights"]["file"]
    if not weights_path.is_file():
        raise PresetError(f"Preset {preset.name!r} has no {weights_path.name} in {preset.folder}: reinstall nlptool.")
    actual = sha256(weights_path)
    if actual != entry["weights"]["sha256"]:
        raise PresetError(
            f"{weights_path} is damaged: its SHA-256 is {actual}, the preset's manifest says "
            f"{entry['weights']['sha256']}. Reinstall nlptool (or rebuild the preset)."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        unpack(preset, staging, direction)
        try:
            os.rename(staging, target)
        except OSError:  # another process made it first: theirs is the same
            if not (target / "training.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def unpack(preset: Preset, folder: Path, direction: str = "forward") -> None:
    """Write `preset`'s forward (or backward) model into the empty `folder` as a
    finished language-model run (its weights unchecked: `run_dir` checks them first)."""
    import numpy as np

    from nlptool import config as config_lib
    from nlptool import runs, tasks
    from nlptool.files import write_json
    from nlptool.tasks.base import DataSource, Preprocessing

    entry = preset.model(direction)
    task = tasks.get("language-model")
    config = config_lib.from_dict(task.config_class, entry["config"])
    source = DataSource(in_memory=True, fingerprint=f"{PREFIX}{preset.name}:{direction}")
    about = {"preset": preset.name, "version": preset.version, "direction": direction}
    run, _ = runs.Run.create(folder, task, config, source, about)
    for name in preset.manifest["tokenizer_files"]:
        shutil.copyfile(preset.folder / name, folder / name)
    model = task.build_model(config, Preprocessing.load(folder, task.tokenizer_folders))
    path = preset.folder / entry["weights"]["file"]
    with np.load(path) as arrays:
        values = [arrays[f"{i:04d}"] for i in range(len(arrays.files))]
    if len(values) != len(model.weights):
        raise PresetError(f"{path} holds {len(values)} arrays; the model has {len(model.weights)}.")
    for variable, value in zip(model.weights, values):
        variable.assign(value.astype(variable.dtype))
    (folder / runs.CHECKPOINT).parent.mkdir(parents=True)
    model.save_weights(folder / runs.CHECKPOINT)
    config_lib.save_yaml(config, folder / runs.CONFIG_FILE)
    write_json(folder / runs.TRAINING_FILE, about)


def pack(
    run,
    folder,
    *,
    name,
    version,
    description,
    corpus,
    licences,
    corpus_summary,
    build_command,
    metrics,
    backward=None,
    backward_metrics=None,
):
    """Write the preset `name` of the trained language-model `run` (a Run or
    its path) into the new or empty `folder`: float16 weights, the tokeniser,
    and a manifest with their checksum and what the caller says of the data.
    `backward` (a Run or path): a backward language model with the same
    tokeniser, packed beside it with `backward_metrics`."""
    from nlptool import config as config_lib
    from nlptool.files import write_json
    from nlptool.tokenizers.files import TOKENIZER_FILE

    run = _language_model_run(run, "forward")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise PresetError(f"{folder} is not empty: a preset is written into a new or empty folder.")
    trained = run.load()
    if backward is not None:
        backward = _language_model_run(backward, "backward")
        if (backward.path / TOKENIZER_FILE).read_bytes() != (run.path / TOKENIZER_FILE).read_bytes():
            raise PresetError(f"{backward.path} has another tokeniser than {run.path}: a preset has one.")
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_files = [TOKENIZER_FILE]  # the language model's one tokeniser, at the top of its run
    shutil.copyfile(run.path / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    manifest = {
        "name": name,
        "version": version,
        "task": "language-model",
        "description": description,
        "corpus": corpus,
        "corpus_summary": corpus_summary,
        "licences": licences,
        "config": config_lib.to_dict(trained.config),
        "vocabulary": trained.preprocessing.tokenizers["text"].vocabulary_size(),
        **_packed_weights(trained.model, folder / WEIGHTS),
        "tokenizer_files": tokenizer_files,
        "metrics": metrics,
        "build_command": build_command,
    }
    if backward is not None:
        trained_backward = backward.load()
        manifest["backward"] = {
            "config": config_lib.to_dict(trained_backward.config),
            **_packed_weights(trained_backward.model, folder / BACKWARD_WEIGHTS),
            "metrics": backward_metrics or {},
        }
    write_json(folder / MANIFEST, manifest)
    return folder


def _language_model_run(run, direction):
    from nlptool import runs

    run = runs.Run.open(run) if not isinstance(run, runs.Run) else run
    if run.task.name != "language-model":
        raise PresetError(f"{run.path} is a {run.task.name} run; a preset is made from a language-model run.")
    actual = run.config.model.direction
    if actual != direction:
        raise PresetError(f"{run.path} is a {actual} language model; the preset's {direction} model is needed here.")
    return run


def _packed_weights(model, path):
    """Write `model`'s weights in float16 to `path`; the manifest's entries that describe them."""
    import numpy as np

    from nlptool.files import write_atomically

    arrays = {f"{i:04d}": variable.numpy().astype(np.float16) for i, variable in enumerate(model.weights)}
    write_atomically(path, lambda handle: np.savez_compressed(handle, **arrays), binary=True)
    return {
        "parameters": int(sum(int(np.prod(v.shape)) for v in model.weights)),
        "weights": {"file": path.name, "dtype": "float16", "sha256": sha256(path)},
    }


def set_metrics(folder, direction="forward", **values):
    """Add `values` to the metrics of the preset in `folder`'s forward (or
    backward) model, in its manifest (the weights stay as packed)."""
    from nlptool.files import write_json

    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    (manifest if direction == "forward" else manifest[direction])["metrics"].update(values)
    write_json(path, manifest)
