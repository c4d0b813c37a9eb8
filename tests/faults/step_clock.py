"""A callback for the time-budget resume tests: the run's `TimeBudget` reads a clock that advances a fixed number
of seconds per optimizer step instead of the wall clock, so where a budgeted run stops, and the horizon its
schedule follows, are the same in every run of it, interrupted or not.

    llm_lit fit ... --time_budget 70 --trainer.callbacks+=step_clock.StepClock --trainer.callbacks.seconds_per_step 1

(`tests/faults` must be on the subprocess's PYTHONPATH: `fault_helpers.faults_env`.)
"""

from __future__ import annotations

from typing import Optional

import lightning as L

from llm_lit.training.budget import time_budget_of


class StepClock(L.Callback):
    """Gives the run's `TimeBudget` a clock of `seconds_per_step` per optimizer step taken in this process (the
    seconds of earlier processes come from the checkpoint, as with the wall clock).

    Args:
        seconds_per_step: Seconds the clock advances per optimizer step.
    """

    def __init__(self, seconds_per_step: float = 1.0) -> None:
        self.seconds_per_step = seconds_per_step
        self._trainer: Optional[L.Trainer] = None
        self._first_step: Optional[int] = None

    def clock(self) -> float:
        if self._trainer is None or self._first_step is None:
            return 0.0
        return (self._trainer.global_step - self._first_step) * self.seconds_per_step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        budget = time_budget_of(trainer)
        assert budget is not None, "StepClock needs --time_budget"
        budget.clock = self.clock
        self._trainer = trainer

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_step = trainer.global_step  # after a resume: the checkpoint's step
