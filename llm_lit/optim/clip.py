"""Global-norm gradient clipping."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import torch
from torch import Tensor

from llm_lit.optim.adamw import OptimizerConfigError


@torch.no_grad()
def clip_grad_norm(parameters: Tensor | Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale every gradient by `max_norm / (norm + 1e-6)` when their global L2 norm exceeds `max_norm`.

    The norm is taken over every parameter that has a gradient (frozen or unused ones are
    skipped). Returns the total norm before clipping, a float32 scalar tensor. The scale is
    applied as `min(1, max_norm / (norm + 1e-6))` without a device sync.
    """
    if not max_norm > 0:
        raise OptimizerConfigError(f"max_norm must be a positive number (got {max_norm}); pass e.g. 1.0.")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    by_device: dict[tuple[torch.device, torch.dtype], list[Tensor]] = defaultdict(list)
    for g in grads:
        by_device[(g.device, g.dtype)].append(g)
    device = grads[0].device
    norms = [torch.stack(torch._foreach_norm(gs)).float().to(device) for gs in by_device.values()]
    total_norm = torch.cat(norms).norm()
    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    for (dev, _), gs in by_device.items():
        torch._foreach_mul_(gs, scale.to(dev))
    return total_norm
