"""Checks that stop a run early, in one sentence, instead of late with a traceback or bad files.

* the non-finite guard: a NaN/inf loss or gradient norm stops training before the optimizer
  step (so no checkpoint ever holds the weights it would have produced), or is skipped;
* `trainer.devices` asking for accelerators the machine does not have, and FSDP without a GPU;
* a `fit` without `trainer.max_steps`, which the learning-rate schedule's length comes from.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch

from llm_lit.errors import UserError


class NonFiniteError(UserError):
    """The loss or the gradients became NaN or infinite; training stopped before updating the weights."""


def nonfinite_message(step: int, loss: float, grad_norm: float) -> str:
    """The one-sentence report of a non-finite step (`step` counts optimizer steps from 0)."""
    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {grad_norm}"
    return (f"Training stopped at step {step}: the {what}, so the weights were not updated and no checkpoint "
            "holds them; lower model.optimizer.lr or model.grad_clip, or pass --model.skip_nonfinite true "
            "to skip such steps.")


def unusable_message(reason: str, step: int, since: int) -> str:
    """The one-sentence report of weights that became unusable: `reason` says how it showed at global step
    `step`; the update that did it came at step `since` or later, so checkpoints of earlier steps are good."""
    return (f"Training stopped at step {step}: {reason}, so the weights are unusable (no sample is drawn from them "
            f"and no checkpoint written); checkpoints written after step {since} may hold them too, so resume from "
            f"one of step {since} or earlier with a lower model.optimizer.lr (or model.grad_clip).")


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor holds only finite values (one device sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def require_max_steps(max_steps: Optional[int]) -> int:
    """`max_steps` when it is a positive step count, else `UserError` (the schedule's length comes from it)."""
    if max_steps is None or max_steps < 1:
        raise UserError("Set trainer.max_steps (e.g. --trainer.max_steps 2000): the learning-rate schedule's "
                        "length comes from it.")
    return max_steps


def check_devices(accelerator: Any, devices: Any) -> None:
    """Refuse `devices` asking for more GPUs than this machine has, in one sentence (before Lightning does)."""
    name = str(accelerator).lower() if accelerator is not None else "auto"
    if name not in ("gpu", "cuda"):
        return
    available = torch.cuda.device_count()
    if available == 0:
        raise UserError(f"trainer.accelerator is '{accelerator}' but this machine has no usable GPU; "
                        "pass --trainer.accelerator cpu (or auto).")
    wanted = _requested_count(devices, available)
    if wanted is not None and wanted > available:
        raise UserError(f"trainer.devices asks for {wanted} GPUs but this machine has {available}; "
                        f"pass --trainer.devices {available} or fewer (or 'auto').")


def check_strategy(strategy: Any, accelerator: Any) -> None:
    """Refuse FSDP without a CUDA GPU in one sentence (Lightning stops with a traceback there)."""
    name = strategy if isinstance(strategy, str) else type(strategy).__name__
    if "fsdp" not in str(name).lower():
        return
    chosen = str(accelerator).lower() if accelerator is not None else "auto"
    if chosen == "cpu":
        reason = "--trainer.accelerator is cpu"
    elif chosen in ("auto", "gpu", "cuda") and torch.cuda.device_count() == 0:
        reason = "this machine has no usable CUDA GPU"
    else:
        return
    raise UserError(f"--trainer.strategy {name} shards the model across CUDA GPUs but {reason}; use "
                    "--trainer.accelerator gpu on a GPU machine, or --trainer.strategy ddp (or auto) on a CPU.")


def _requested_count(devices: Any, available: int) -> Optional[int]:
    """How many GPUs a `devices` value asks for: an int, a list of indices, '0,1' or '-1'/'auto' (all)."""
    if devices in (None, "auto", -1, "-1"):
        return None
    if isinstance(devices, (list, tuple)):
        return max(int(d) for d in devices) + 1 if devices else None
    text = str(devices).strip()
    if "," in text:
        indices = [int(d) for d in text.split(",") if d.strip()]
        return max(indices) + 1 if indices else None
    try:
        return int(text)
    except ValueError:
        return None
