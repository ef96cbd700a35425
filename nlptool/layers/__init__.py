"""Keras layers of nlptool."""

from nlptool.layers.gru import GRU

__all__ = ["GRU"]
