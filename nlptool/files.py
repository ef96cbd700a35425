"""Writing files whole or not at all."""

import contextlib
import json
import os
import tempfile
from pathlib import Path


def write_atomically(path, write, binary=False):
    """Create or replace the file `path` with what `write(stream)` writes
    (a UTF-8 text stream, or a byte stream with `binary=True`).

    The text goes to a temporary file in the same directory, which replaces
    `path` only once complete and synced, so an interrupted write leaves any
    previous file intact and no partial file behind. The previous file's
    permissions are kept (0644 for a new file). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def write_json(path, payload):
    """Create or replace `path` with `payload` as UTF-8 JSON, atomically."""
    return write_atomically(path, lambda stream: json.dump(payload, stream, ensure_ascii=False, indent=1))


# === the layout of a model server's model folder: BASE/1/, BASE/2/, ... ===


def model_versions(base):
    """The version numbers of the SavedModels in the model folder `base`
    (its subfolders named by a number, as TF Serving reads them), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(
        int(entry.name) for entry in base.iterdir() if entry.name.isdigit() and (entry / "saved_model.pb").is_file()
    )


def saved_model_dir(path):
    """The SavedModel that `path` names: `path` itself if it holds one, the
    latest version if it is a model folder, None if neither."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = model_versions(path)
    return path / str(versions[-1]) if versions else None
