"""Learning-rate schedules: cosine with warmup, warmup–stable–decay (trapezoidal), and inverse-time
decay, each a pure function of the step, and the `LambdaLR` wrapper that applies one to an optimizer.

All three rise linearly from 0 at step 0 to `max_lr` at `warmup_iters`, then:

    cosine        min_lr + (max_lr - min_lr) (1 + cos(pi p)) / 2,  p = (it - warmup) / (cycle - warmup)
                  down to min_lr at step `cosine_cycle_iters`, min_lr after it
    wsd           max_lr until `decay_start`, then down to min_lr at `total_iters`:
                  min_lr + (max_lr - min_lr) (1 - p)  (linear)  or  (1 - sqrt(p))  ('1-sqrt'),
                  p = (it - decay_start) / (total_iters - decay_start); min_lr after it
    inverse_time  max(min_lr, max_lr / (1 + decay (it - warmup)))  (min_lr = 0, warmup = 0: lr / (1 + decay t))
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch

from llm_lit.optim.adamw import OptimizerConfigError

WsdShape = Literal["linear", "1-sqrt"]


def lr_at(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Learning rate at step `it`.

    Rises linearly from 0 at step 0 to `max_lr` at `warmup_iters`, follows a half cosine down
    to `min_lr` at step `cosine_cycle_iters` (an absolute step, not a length after warmup),
    and stays at `min_lr` after it.
    """
    if warmup_iters < 0 or cosine_cycle_iters < warmup_iters:
        raise OptimizerConfigError(
            f"The schedule needs 0 <= warmup_iters <= cosine_cycle_iters (got {warmup_iters} and "
            f"{cosine_cycle_iters}); make the cosine cycle end at or after the warmup."
        )
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it >= cosine_cycle_iters:
        return min_lr
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def wsd_lr_at(it: int, max_lr: float, min_lr: float, warmup_iters: int, decay_start: int, total_iters: int,
              shape: WsdShape = "linear") -> float:
    """Learning rate at step `it` of warmup–stable–decay (a trapezoid).

    Rises linearly from 0 at step 0 to `max_lr` at `warmup_iters`, stays at `max_lr` until
    `decay_start`, falls to `min_lr` at `total_iters` (linearly, or as `1 - sqrt(progress)` with
    shape '1-sqrt'), and stays at `min_lr` after it. Steps are absolute.
    """
    if not 0 <= warmup_iters <= decay_start <= total_iters:
        raise OptimizerConfigError(
            f"The wsd schedule needs 0 <= warmup_iters <= decay_start <= total_iters (got {warmup_iters}, "
            f"{decay_start} and {total_iters}); shorten the warmup or the decay.")
    if shape not in ("linear", "1-sqrt"):
        raise OptimizerConfigError(f"The wsd decay shape must be 'linear' or '1-sqrt' (got {shape!r}).")
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    if it < decay_start:
        return max_lr
    if it >= total_iters:
        return min_lr
    progress = (it - decay_start) / (total_iters - decay_start)
    remaining = 1.0 - progress if shape == "linear" else 1.0 - math.sqrt(progress)
    return min_lr + remaining * (max_lr - min_lr)


def inverse_time_lr_at(it: int, max_lr: float, min_lr: float, warmup_iters: int, decay: float) -> float:
    """Learning rate at step `it` of inverse-time decay: a linear rise from 0 at step 0 to `max_lr` at
    `warmup_iters`, then `max_lr / (1 + decay * (it - warmup_iters))`, never below `min_lr`.

    With no warmup and `min_lr = 0` this is the classic `lr_t = lr / (1 + decay * t)`.
    """
    if warmup_iters < 0 or not decay >= 0:
        raise OptimizerConfigError(f"The inverse_time schedule needs warmup_iters >= 0 and decay >= 0 (got "
                                   f"{warmup_iters} and {decay}); pass non-negative values.")
    if it < warmup_iters:
        return max_lr * it / warmup_iters
    return max(min_lr, max_lr / (1.0 + decay * (it - warmup_iters)))


def peak_relative_scheduler(optimizer: torch.optim.Optimizer, lr_fn: Callable[[int], float],
                            max_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` that sets every group's lr to its own peak times `lr_fn(step) / max_lr`.

    Each group's current lr is taken as its peak, so groups with different peaks (Muon's matrices
    and its AdamW parameters) follow the same shape, each scaled to its own peak. Call `.step()`
    once per optimizer step.
    """
    if max_lr < 0:
        raise OptimizerConfigError(f"Learning rates must be >= 0 (got max_lr={max_lr}); pass non-negative rates.")
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]

    def factor(it: int) -> float:
        return lr_fn(it) / max_lr if max_lr > 0 else 0.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cosine_warmup_scheduler(optimizer: torch.optim.Optimizer, max_lr: float, min_lr: float, warmup_iters: int,
                            cosine_cycle_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` that sets every group's lr to `lr_at(step, ...)`; call `.step()` once per optimizer step.

    `LambdaLR` multiplies each group's initial lr by the lambda, so the groups' lr is first
    set to `max_lr` and the lambda returns `lr_at(...) / max_lr`.
    """
    lr_at(0, max_lr, min_lr, warmup_iters, cosine_cycle_iters)  # validate the arguments now
    if max_lr < 0 or min_lr < 0:
        raise OptimizerConfigError(f"Learning rates must be >= 0 (got max_lr={max_lr}, min_lr={min_lr}); pass non-negative rates.")
    for group in optimizer.param_groups:
        group["lr"] = max_lr
    return peak_relative_scheduler(optimizer, lambda it: lr_at(it, max_lr, min_lr, warmup_iters, cosine_cycle_iters),
                                   max_lr)
