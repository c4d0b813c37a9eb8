"""The progress bar of a run: Lightning's (Rich when installed, else TQDM), saying only what is true.

* The training line reads "Epoch 0" in a run of steps and "Epoch 0/2" (Lightning's count, from 0) in a
  run of 3 epochs; never "Epoch 0/-2".
* `v_num` is the run's version number (`version_3` -> 3), not the last four characters of the folder's
  name ("on_3"); without a numbered version it is left out.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from llm_lit.training.lightning_compat import RichTrainLine

_VERSION = re.compile(r"version_(\d+)")


def version_number(trainer: L.Trainer) -> Optional[int]:
    """The number of the first logger's version (`version_3` or 3 -> 3), or None."""
    logger = trainer.logger
    version = getattr(logger, "version", None) if logger is not None else None
    if isinstance(version, int):
        return version
    match = _VERSION.fullmatch(str(version)) if version is not None else None
    return int(match.group(1)) if match else None


def _with_version(metrics: dict[str, Any], trainer: L.Trainer) -> dict[str, Any]:
    metrics.pop("v_num", None)
    number = version_number(trainer)
    return metrics if number is None else {"v_num": str(number), **metrics}  # a str: Rich prints numbers as 0.000


class RichRunProgressBar(RichTrainLine):
    """Lightning's Rich progress bar with the run's version number (see the module docstring)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _with_version(super().get_metrics(trainer, pl_module), trainer)


class TQDMRunProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar with the run's version number (see the module docstring)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _with_version(super().get_metrics(trainer, pl_module), trainer)


def run_progress_bar() -> ProgressBar:
    """The bar Lightning would pick (Rich when it is installed, else TQDM), as one of the classes above."""
    try:
        return RichRunProgressBar()
    except ModuleNotFoundError:  # Lightning's Rich bar needs the rich package
        return TQDMRunProgressBar()
