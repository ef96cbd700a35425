"""nlptool: NLP on GRUs with Keras 3 and TensorFlow."""

from nlptool import layers
from nlptool.layers import GRU

__version__ = "0.1.0"

__all__ = ["GRU", "layers", "__version__"]
