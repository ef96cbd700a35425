"""SavedModel export: written whole or not at all.

An export is saved into a temporary folder beside its destination, loaded
back and checked there, and only then moved into place with a rename. An
existing export is replaced only with `overwrite=True`, and is kept if the
new one fails. Readers (a TF Serving model directory, say) therefore never
see a half-written SavedModel.
"""

import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from nlptool.errors import NlptoolError
from nlptool.files import write_json


class ExportError(NlptoolError, RuntimeError):
    """The export could not be written or did not verify."""


def save(module, out_dir, signatures, overwrite=False, extra=None):
    """Save `module` as a SavedModel at `out_dir` with `signatures`
    (name -> tf.function or concrete function), and the JSON files `extra`
    (relative path -> payload, e.g. "assets.extra/nlptool.json") beside it;
    returns the path.

    Raises ExportError if `out_dir` exists and `overwrite` is False, or if
    the saved model does not load back with every signature.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists; pass --overwrite (overwrite=True) to replace it.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        for name, payload in (extra or {}).items():
            write_json(staging / name, payload)
        loaded = tf.saved_model.load(str(staging))
        missing = sorted(set(signatures) - set(loaded.signatures))
        if missing:
            raise ExportError(f"The saved model lacks the signatures {missing}.")
        if out_dir.exists():
            previous = out_dir.with_name(f".{out_dir.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(out_dir, previous)
            os.replace(staging, out_dir)
            shutil.rmtree(previous)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the export succeeded
    return out_dir
