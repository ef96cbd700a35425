"""Writing files whole or not at all, and one writer of a folder at a time."""

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from nlptool.errors import FolderBusy


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path`, ending like it (`.weights.h5`, `.npz`),
    for a writer that takes a path; when the block ends without error the
    file is synced and replaces `path`, so an interrupted write leaves any
    previous file intact and no partial file behind. The previous file's
    permissions are kept (0644 for a new file).

        with replacing(run_dir / "best.weights.h5") as temporary:
            model.save_weights(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    ending = "".join(path.suffixes[-2:])
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{ending}")
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_atomically(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], binary: bool = False) -> Path:
    """Create or replace the file `path` with what `write(stream)` writes
    (a UTF-8 text stream, or a byte stream with `binary=True`), whole or
    not at all (see `replacing`). Returns the path."""
    with replacing(path) as temporary:
        with open(temporary, "wb") if binary else open(temporary, "w", encoding="utf-8") as stream:
            write(stream)
    return Path(path)


def sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the file `path`, as hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Create or replace `path` with `payload` as UTF-8 JSON, atomically."""
    return write_atomically(path, lambda stream: json.dump(payload, stream, ensure_ascii=False, indent=1))


# === the layout of a model server's model folder: BASE/1/, BASE/2/, ... ===


def model_versions(base: str | os.PathLike[str]) -> list[int]:
    """The version numbers of the SavedModels in the model folder `base`
    (its subfolders named by a number, as TF Serving reads them), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(
        int(entry.name) for entry in base.iterdir() if entry.name.isdigit() and (entry / "saved_model.pb").is_file()
    )


def saved_model_dir(path: str | os.PathLike[str]) -> Path | None:
    """The SavedModel that `path` names: `path` itself if it holds one, the
    latest version if it is a model folder, None if neither."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = model_versions(path)
    return path / str(versions[-1]) if versions else None


# === one writer at a time ===


@contextlib.contextmanager
def locked(folder: str | os.PathLike[str], doing: str) -> Iterator[None]:
    """Hold the lock of `folder` (created if missing) for the block; `doing`
    says what for ("training", "exporting"). A second holder anywhere on
    the machine is refused at once with `FolderBusy`, naming the process
    that holds it. The lock is the kernel's (flock on the folder itself),
    so it puts no file into the folder and a killed holder never leaves it
    stale."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(
                f"Cannot start {doing}: {folder} is in use by {_holder(folder)}. "
                "Wait for it to finish, or use another folder."
            ) from None
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _holder(folder):
    """The process holding the flock of `folder`, from /proc/locks (Linux), as "process N (command)"."""
    inode = os.stat(folder).st_ino
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                pid = fields[4]
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"process {pid} ({_short_command(command.strip())})"
    return "another process"


def _short_command(command):
    """A command line with its program and script shortened to their names, for messages."""
    return " ".join(Path(word).name if i < 2 and "/" in word else word for i, word in enumerate(command.split(" ")))
