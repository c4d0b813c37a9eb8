"""AdamW's update of one parameter, compiled by `torch.compile` into a single pass over memory.

The eager update (`AdamW._update_tiles`) makes eight passes over each tile: one per
`torch._foreach_*` op. Compiled, the same arithmetic becomes one loop (C++ on a CPU, one
Triton kernel on a GPU) that reads parameter, gradient and both moments once and writes
three of them back, like `torch.optim.AdamW(fused=True)`'s native kernel.

Every per-step number comes in as a 0-d tensor: a Python float would be baked into the
compiled code and recompile it on each new learning rate. Tensors come in flattened, with
dynamic sizes, so one compiled loop serves every parameter of a dtype.
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import torch
from torch import Tensor

from llm_lit.errors import UserError


class CompiledUpdateError(UserError, RuntimeError):
    """torch.compile could not build the AdamW update on this machine."""


def adamw_update_(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, *, decay: Tensor,
                  one_minus_beta1: Tensor, beta2: Tensor, one_minus_beta2: Tensor, step_size: Tensor,
                  bias_correction2_sqrt: Tensor, eps: Tensor) -> None:
    """AdamW's update of one parameter in place, in the eager path's order of operations.

    Args:
        param, grad, exp_avg, exp_avg_sq: one parameter, its gradient and moments, all `(n,)`.
        decay: `1 - lr * weight_decay`.
        one_minus_beta1, beta2, one_minus_beta2: the moments' decay rates.
        step_size: `-lr / (1 - beta1^t)`.
        bias_correction2_sqrt: `sqrt(1 - beta2^t)`.
        eps: added to the denominator.
    """
    param.mul_(decay)
    exp_avg.lerp_(grad, one_minus_beta1)
    exp_avg_sq.mul_(beta2).add_(grad * grad * one_minus_beta2)
    denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
    param.add_(exp_avg / denom * step_size)


@cache
def compiled_adamw_update() -> Callable[..., None]:
    """`adamw_update_` compiled once per process (one graph per dtype and device, sizes dynamic)."""
    return torch.compile(adamw_update_, dynamic=True, fullgraph=True)


def run_compiled(update: Callable[..., None], *args: Tensor, **scalars: Tensor) -> None:
    """Call the compiled update, turning a failure to build it into one clear error."""
    try:
        update(*args, **scalars)
    except Exception as err:  # inductor's errors come from many places: missing compiler, bad toolchain, ...
        if not _is_compile_failure(err):
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompiledUpdateError(
            f"torch.compile could not build the AdamW update ({first_line[:200]}); install a working C++ "
            "compiler (CPU) or Triton (GPU), or set model.optimizer.compile: false.") from err


def _is_compile_failure(err: Exception) -> bool:
    """Whether an exception was raised while compiling (not by the arithmetic itself)."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "Compile" in type(err).__name__


@cache
def compile_failure(device_type: str) -> str | None:
    """None when `torch.compile` can build and run a kernel on `device_type` ('cpu', 'cuda'), else the first line
    of why not (no C++ compiler, no Triton, ...). Probed once per process with a one-line function."""
    def probe(x: Tensor) -> Tensor:
        return torch.sin(x) + 1

    try:
        torch.compile(probe, fullgraph=True)(torch.zeros(8, device=device_type))
        return None
    except Exception as err:  # inductor fails in many places: missing compiler, bad toolchain, ...
        text = str(err).strip()
        return (text.splitlines()[0] if text else type(err).__name__)[:200]
