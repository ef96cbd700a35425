"""Keras layers of nlptool."""

from nlptool.layers.attention import BahdanauAttention
from nlptool.layers.gru import GRU

__all__ = ["BahdanauAttention", "GRU"]
