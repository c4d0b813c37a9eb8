"""Linear warmup then cosine decay of the learning rate."""

from __future__ import annotations

import math

import torch

from llm_lit.optim.adamw import OptimizerConfigError


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
        group["initial_lr"] = max_lr

    def factor(it: int) -> float:
        return lr_at(it, max_lr, min_lr, warmup_iters, cosine_cycle_iters) / max_lr if max_lr > 0 else 0.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
