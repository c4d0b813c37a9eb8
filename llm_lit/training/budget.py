"""A wall-time budget for `llm_lit fit`: the run stops itself in time to validate and save, and the
learning-rate schedule lasts as many steps as fit in the budget.

    llm_lit fit --config configs/shakespeare.yaml --time_budget 570

The budget counts from the start of the process, so it includes importing torch, training the
tokenizer and encoding the corpus; a run resumed with `--ckpt_path last` adds the seconds its
earlier processes had used when that checkpoint was written.

How long the schedule is (the horizon). After `n` optimizer steps that took `s` seconds in this
process (counted from the end of its first step, so one-time start-up costs are left out, and
periodic validations and checkpoints included), a step costs `s / n` seconds. With `R` seconds left
before the final validation must start, `R n / s` more steps fit, so the schedule is evaluated as if
`trainer.max_steps` were

    H = step + floor(R n / s),   R = budget - elapsed - reserve     (at most trainer.max_steps)

Steady steps keep `H` constant, which is the step-based schedule with `max_steps = H`; a machine that
slows down shortens `H` and the decay speeds up so that it still ends at the last step. `trainer.max_steps`
becomes a cap.

When to stop. After each optimizer step, if one more step and the reserve would overrun the budget
(`elapsed + s / n + reserve >= budget`), `trainer.should_stop` is raised: Lightning then validates and
the checkpoint callbacks save, as at `max_steps`. The reserve is what the final validation and its
checkpoints take: the longest pause for validation seen so far in this run (from the start of a
validation to the next training step, so samples and checkpoint writes are in it) times
`RESERVE_FACTOR`, plus a margin for the end of the process; before the first validation it is
`UNMEASURED_RESERVE_FRACTION` of the budget (plus the margin). Validating periodically
(`trainer.val_check_interval`) keeps the estimate measured.

With several processes (DDP), each would measure its own clock (the ranks start seconds apart), and a
rank that stopped alone, or scheduled another learning rate, would hang or split the run: rank 0's
horizon and stop decision are broadcast to all ranks, and the schedule reads that. A broadcast is a
collective that makes every rank wait for the slowest (on small CPU models it costs a tenth of a step),
so it happens every `SYNC_EVERY` steps, and rank 0 stops at a broadcast when the steps until the next one
would not fit.

A checkpoint carries the horizon the schedule was following: a resumed process follows it until it has
timed a step of its own (with several processes, until rank 0's next broadcast), so a resume changes no
learning rate on its first steps.

A time-budgeted run is not reproducible step for step (its length depends on the machine's speed);
without `--time_budget` nothing here runs and training is bitwise as before, resume included.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable, Optional

import lightning as L

from llm_lit.errors import UserError

#: The final validation is given this many times the longest validation pause seen so far.
RESERVE_FACTOR = 1.25
#: Kept for the end of the process after the final checkpoint (closing loggers, exiting): this many
#: seconds plus RESERVE_MARGIN_FRACTION of the budget.
RESERVE_MARGIN_S = 2.0
RESERVE_MARGIN_FRACTION = 0.01
#: Share of the budget kept for the final validation before any validation has been timed.
UNMEASURED_RESERVE_FRACTION = 0.05
#: With several processes, rank 0's horizon and stop decision are shared every this many steps.
SYNC_EVERY = 25
#: A horizon no run reaches: the schedule's own cap then decides (`horizon` takes the smaller).
UNCAPPED = 2**62


def seconds_since_process_start() -> float:
    """Seconds since this process started: from Linux's `/proc` (so the time spent importing torch counts),
    elsewhere since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()  # the name (field 2) may hold spaces
        start_ticks = int(after_name[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic() - _IMPORTED_AT


_IMPORTED_AT = time.monotonic()
#: `time.monotonic()` at the start of this process.
PROCESS_START = time.monotonic() - seconds_since_process_start()


def process_clock() -> float:
    """Seconds since this process started (monotonic)."""
    return time.monotonic() - PROCESS_START


class TimeBudget(L.Callback):
    """Ends `fit` within `seconds` of wall time (see the module docstring) and plans the schedule's length.

    Args:
        seconds: the wall-time budget of the run, counted from the process start (plus the seconds
            used by the processes before a resume).
        clock: seconds since the process started (tests pass a fake one).
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = process_clock) -> None:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"A time budget must be a positive number of seconds (got {seconds!r}).")
        self.seconds = float(seconds)
        self.clock = clock
        self.seconds_before = 0.0  # used by earlier processes of this run (from the checkpoint)
        self.longest_pause: Optional[float] = None  # longest validation pause so far (s)
        self.stopped_at: Optional[int] = None  # the step at which this callback stopped the run
        self._first_step_end: Optional[float] = None
        self._steps_timed = 0
        self._last_step = -1
        self._pause_start: Optional[float] = None
        self._agreed_horizon: Optional[int] = None  # rank 0's, with several processes (see the module docstring)
        self._planned: Optional[int] = None  # the horizon last given to the schedule (a resume starts from it)

    # ------------------------------------------------------------------ the estimates
    def elapsed(self) -> float:
        """Seconds of the budget used so far."""
        return self.seconds_before + self.clock()

    def seconds_per_step(self) -> Optional[float]:
        """Mean wall time of an optimizer step in this process since its first (None before two steps)."""
        if self._first_step_end is None or self._steps_timed == 0:
            return None
        return max(self.clock() - self._first_step_end, 1e-9) / self._steps_timed

    def reserve(self) -> float:
        """Seconds kept for the final validation, its checkpoints and the end of the process."""
        margin = RESERVE_MARGIN_S + RESERVE_MARGIN_FRACTION * self.seconds
        if self.longest_pause is None:
            return UNMEASURED_RESERVE_FRACTION * self.seconds + margin
        return RESERVE_FACTOR * self.longest_pause + margin

    def horizon(self, step: int, cap: int) -> int:
        """The number of optimizer steps the run will make, estimated at `step` (at most `cap`); with several
        processes, rank 0's estimate after the last step, which every rank shares."""
        if self._agreed_horizon is not None:
            self._planned = max(step, min(cap, self._agreed_horizon))
        else:
            self._planned = self.estimated_horizon(step, cap)
        return self._planned

    def estimated_horizon(self, step: int, cap: int) -> int:
        """The number of optimizer steps that fit in the budget by this process's clock (at most `cap`)."""
        per_step = self.seconds_per_step()
        if per_step is None:  # nothing timed yet in this process: the plan it resumed (or the cap)
            return cap if self._planned is None else max(step, min(cap, self._planned))
        left = self.seconds - self.elapsed() - self.reserve()
        return max(step, min(cap, step + math.floor(max(left, 0.0) / per_step)))

    def should_stop(self, steps: int = 1) -> bool:
        """Whether `steps` more steps and the final validation would overrun the budget."""
        per_step = self.seconds_per_step() or 0.0
        return self.elapsed() + steps * per_step + self.reserve() >= self.seconds

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_step_end, self._steps_timed, self._last_step = None, 0, trainer.global_step
        # with several processes, no rank's own clock counts: until rank 0's next estimate arrives, the plan the
        # run resumed (every rank restored the same one), or the cap in a new run
        if trainer.world_size > 1:
            self._agreed_horizon = UNCAPPED if self._planned is None else self._planned
        else:
            self._agreed_horizon = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pause_start is not None:  # the first step after a validation: its pause is over
            pause = self.clock() - self._pause_start
            self.longest_pause = pause if self.longest_pause is None else max(self.longest_pause, pause)
            self._pause_start = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step:  # inside gradient accumulation: no optimizer step yet
            return
        self._last_step = step
        if self._first_step_end is None:
            self._first_step_end = self.clock()
        else:
            self._steps_timed += 1
        if trainer.world_size == 1:
            stop = self.stopped_at is None and self.should_stop()
        elif step % SYNC_EVERY == 0:  # every rank follows rank 0's clock, read every SYNC_EVERY steps
            stop = self.stopped_at is None and self.should_stop(SYNC_EVERY)
            horizon = self.estimated_horizon(step, UNCAPPED)  # the schedule caps it
            self._agreed_horizon, stop = trainer.strategy.broadcast((horizon, stop), src=0)
        else:
            return
        if stop:
            self.stopped_at = step
            trainer.should_stop = True  # Lightning validates and fit ends; `RunEnd` leaves last.ckpt at this step
            if trainer.is_global_zero:
                print(f"Time budget: stopping after step {step} ({self.elapsed():.0f} s of {self.seconds:.0f} s used) "
                      "to validate and save.", flush=True)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._pause_start = self.clock()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The seconds used so far, the longest validation pause and the schedule's planned horizon (all travel to a
        resumed run, which follows that horizon until its own clock, or rank 0's, has timed a step)."""
        return {"seconds_used": self.elapsed(), "longest_pause": self.longest_pause, "planned_horizon": self._planned}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue a run: the seconds its earlier processes used count against the budget. A run with no time
        left for a step is refused in one line saying what to pass, rather than resumed for one step at a
        learning rate its schedule never meant."""
        self.seconds_before = float(state_dict.get("seconds_used", 0.0))
        self.longest_pause = state_dict.get("longest_pause")
        self._planned = state_dict.get("planned_horizon")
        if self.seconds - self.elapsed() - self.reserve() <= 0:
            raise UserError(
                f"This run has used {self.seconds_before:.0f} s of its {self.seconds:.0f} s time budget, so a resume "
                f"would have no time left to train; pass the run's new total, e.g. --time_budget "
                f"{2 * self.seconds:.0f} (the schedule is re-planned over the longer run: wsd returns to its plateau "
                "and decays again at the end), or --time_budget null --trainer.max_steps N to train to step N.")


def time_budget_of(trainer: Optional[L.Trainer]) -> Optional[TimeBudget]:
    """The trainer's `TimeBudget` callback, or None when the run has no time budget."""
    callbacks = getattr(trainer, "callbacks", None) or []
    return next((c for c in callbacks if isinstance(c, TimeBudget)), None)


def check_time_budget(seconds: Optional[float]) -> None:
    """Refuse, in one sentence, a `--time_budget` that is not a positive number of seconds (None: no budget)."""
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f"time_budget must be a positive number of seconds (got {seconds}); pass e.g. "
                        "--time_budget 600, or leave it out to train for trainer.max_steps.")
