"""Stochastic gradient descent with momentum, optional Nesterov momentum and decoupled weight
decay, from scratch, with the update done by `torch._foreach_*` ops.

Without weight decay the math (and its order of operations) is `torch.optim.SGD`'s with
`dampening=0`, which the tests check bitwise. The decay differs on purpose: torch's
`weight_decay` adds `wd * p` to the gradient (an L2 penalty, which momentum then carries),
ours shrinks the weights directly, as AdamW does.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from llm_lit.optim.adamw import OptimizerConfigError, dense_params_by_device_and_dtype


class SGD(torch.optim.Optimizer):
    """SGD with momentum and decoupled weight decay.

    Per parameter `p` with gradient `g`, at each step, with momentum `mu`:
        b <- mu b + g                      (the momentum buffer, b = 0 before the first step)
        u <- g + mu b   with Nesterov,     u <- b   without,     u <- g   when mu = 0 (no buffer)
        p <- p * (1 - lr * weight_decay)
        p <- p - lr * u

    Args:
        params: parameters or parameter-group dicts (see `param_groups`).
        lr: learning rate.
        momentum: momentum coefficient `mu` in [0, 1); 0 keeps no buffer.
        nesterov: use Nesterov momentum (needs momentum > 0).
        weight_decay: decoupled weight decay coefficient.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-2,
                 momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        problems = []
        if not lr >= 0.0:
            problems.append(f"lr must be >= 0 (got {lr})")
        if not 0.0 <= momentum < 1.0:
            problems.append(f"momentum must be in [0, 1) (got {momentum})")
        if nesterov and momentum == 0.0:
            problems.append("nesterov needs momentum > 0")
        if not weight_decay >= 0.0:
            problems.append(f"weight_decay must be >= 0 (got {weight_decay})")
        if problems:
            raise OptimizerConfigError("Invalid SGD arguments: " + "; ".join(problems) + "; fix them and try again.")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - signature of torch.optim.Optimizer.step
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update_group(group)
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        lr, momentum, weight_decay = float(group["lr"]), group["momentum"], group["weight_decay"]
        for params in dense_params_by_device_and_dtype(group["params"], "SGD"):
            grads = [p.grad for p in params]
            updates = grads
            if momentum != 0.0:
                buffers = [self._momentum_buffer(p) for p in params]
                torch._foreach_mul_(buffers, momentum)
                torch._foreach_add_(buffers, grads)
                updates = torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
            if weight_decay != 0.0:
                torch._foreach_mul_(params, 1.0 - lr * weight_decay)
            torch._foreach_add_(params, updates, alpha=-lr)

    def _momentum_buffer(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["momentum_buffer"]
