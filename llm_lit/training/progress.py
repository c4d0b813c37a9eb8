"""The progress bar of a run: Lightning's (Rich when installed, else TQDM), saying only what is true.

* The training line reads "Epoch 0" in a run of steps and "Epoch 0/2" (Lightning's count, from 0) in a
  run of 3 epochs; never "Epoch 0/-2".
* `v_num` is the run's version number (`version_3` -> 3), not the last four characters of the folder's
  name ("on_3"); without a numbered version it is left out.
* Under `--time_budget` the bar ends where the budget will end the run, not at `trainer.max_steps` (a cap
  the budget reaches first): after each step its total becomes the steps the budget leaves
  (`TimeBudget.horizon`), so the time remaining it shows is the budget's, not the minutes max_steps would take.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from llm_lit.training.budget import time_budget_of
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


def budgeted_total(trainer: L.Trainer, done: int, total: Optional[float]) -> Optional[float]:
    """The training bar's total under a time budget, `done` of its batches done: those plus the batches of the
    optimizer steps the budget leaves (at most `total`, the bar's total so far); None without a budget or
    before the budget has timed a step."""
    budget = time_budget_of(trainer)
    cap = getattr(trainer, "max_steps", -1)
    if budget is None or budget.seconds_per_step() is None or cap is None or cap < 0:
        return None
    steps_left = budget.horizon(trainer.global_step, cap) - trainer.global_step
    batches = done + steps_left * max(1, getattr(trainer, "accumulate_grad_batches", 1))
    return batches if total is None else min(total, batches)


class RichRunProgressBar(RichTrainLine):
    """Lightning's Rich progress bar with the run's version number and the budget's end (see the module
    docstring)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _with_version(super().get_metrics(trainer, pl_module), trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.progress is not None and self.train_progress_bar_id is not None:
            task = next(t for t in self.progress.tasks if t.id == self.train_progress_bar_id)
            total = budgeted_total(trainer, batch_idx + 1, task.total)
            if total is not None:
                self.progress.update(self.train_progress_bar_id, total=total)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class TQDMRunProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar with the run's version number and the budget's end (see the module
    docstring)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _with_version(super().get_metrics(trainer, pl_module), trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        total = budgeted_total(trainer, batch_idx + 1, self.train_progress_bar.total) if self.is_enabled else None
        if total is not None:
            self.train_progress_bar.total = total
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def run_progress_bar() -> ProgressBar:
    """The bar Lightning would pick (Rich when it is installed, else TQDM), as one of the classes above."""
    try:
        return RichRunProgressBar()
    except ModuleNotFoundError:  # Lightning's Rich bar needs the rich package
        return TQDMRunProgressBar()
