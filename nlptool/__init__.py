"""nlptool: NLP on GRUs with Keras 3 and TensorFlow.

    import nlptool

    run = nlptool.train("sentiment", "runs/reviews", train="reviews.csv",
                        columns={"text": "review", "label": "stars"})
    model = nlptool.load("runs/reviews")            # a run directory or an export
    model.predict(["a gorgeous, witty film"])       # [{"label": ..., "probability": ..., ...}]
    model.evaluate(test_file="held_out.csv")
    model.export("runs/reviews/export")

Importing the package costs no TensorFlow; it is imported when a model is
built or loaded.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers see of the names imported on first use below
    from nlptool import layers
    from nlptool.api import load, train
    from nlptool.errors import NlptoolError
    from nlptool.layers import GRU

_LAZY = {
    "GRU": ("nlptool.layers", "GRU"),
    "layers": ("nlptool.layers", None),
    "load": ("nlptool.api", "load"),
    "train": ("nlptool.api", "train"),
    "NlptoolError": ("nlptool.errors", "NlptoolError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = importlib.import_module(module)
        value = value if attribute is None else getattr(value, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["GRU", "NlptoolError", "__version__", "layers", "load", "train"]
