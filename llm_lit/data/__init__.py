"""Data for llm_lit: token cache, window datasets and the `TextDataModule`."""

from llm_lit.data.datamodule import TextDataModule
from llm_lit.data.datasets import IGNORE_INDEX, RandomWindows, SequentialWindows, window_starts

__all__ = ["IGNORE_INDEX", "RandomWindows", "SequentialWindows", "TextDataModule", "window_starts"]
