"""Data for llm_lit: the sharded token cache, window datasets and the `TextDataModule`."""

from llm_lit.data.datamodule import TextDataModule
from llm_lit.data.datasets import IGNORE_INDEX, RandomWindows, SequentialWindows, window_starts
from llm_lit.data.token_array import TokenArray

__all__ = ["IGNORE_INDEX", "RandomWindows", "SequentialWindows", "TextDataModule", "TokenArray", "window_starts"]
