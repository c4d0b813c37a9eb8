"""AdamW (Loshchilov & Hutter) from scratch, with the update done by `torch._foreach_*` ops.

The foreach ops apply one elementwise operation to a whole list of tensors per call, so the
update costs a handful of kernel launches per step instead of a Python loop per parameter.
The math (and its order of operations) matches `torch.optim.AdamW`, which the tests check.
With `compile=True` the same math runs as one compiled pass per parameter
(`compiled_update.py`), tested equal to this eager path.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from llm_lit.errors import UserError
from llm_lit.optim.compiled_update import compiled_adamw_update, run_compiled

#: Elements per tile of the update: small on a CPU so a tile's eight passes hit the cache,
#: large on accelerators where each pass is a kernel launch.
TILE_ELEMENTS_CPU = 2**18
TILE_ELEMENTS_ACCELERATOR = 2**26
#: With `compile=True`, parameters of fewer elements than this (norm weights, biases) take the
#: eager path, all together: a compiled call costs about 0.1 ms of Python and guard checks, more
#: than the eight foreach passes over a few thousand numbers.
COMPILE_MIN_ELEMENTS = 2**14


class OptimizerConfigError(UserError, ValueError):
    """An invalid optimizer, schedule or clipping argument."""


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay.

    Per parameter `p` with gradient `g`, at step `t` (from 1):
        p <- p * (1 - lr * weight_decay)
        m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Args:
        params: parameters or parameter-group dicts (see `param_groups`).
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator for numerical stability.
        weight_decay: decoupled weight decay coefficient.
        compile: update each parameter in one `torch.compile`d pass instead of eight eager
            passes (about 2.5x faster on a CPU; compiling takes seconds on the first step).
            Parameters that are not plain contiguous tensors (e.g. FSDP2's DTensors), and small ones
            (fewer than `COMPILE_MIN_ELEMENTS`), stay eager.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.1,
                 compile: bool = False) -> None:  # noqa: A002 - named like LanguageModel's compile
        problems = adamw_problems(lr, betas, eps, weight_decay)
        if problems:
            raise OptimizerConfigError("Invalid AdamW arguments: " + "; ".join(problems) + "; fix them and try again.")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.compile = compile

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - signature of torch.optim.Optimizer.step
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adamw_update_group(self.state, group, self.compile)
        return loss

    @staticmethod
    def _update_tiles(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                      step_sizes: list[float], bias_correction2_sqrts: list[float], *, lr: float, beta1: float,
                      beta2: float, eps: float, weight_decay: float) -> None:
        """The AdamW update of one tile: lists of same-shaped pieces of parameters and their states."""
        if weight_decay != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, _one_or_each(bias_correction2_sqrts))
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, _one_or_each(step_sizes))

    @staticmethod
    def _update_compiled(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                         exp_avg_sqs: list[Tensor], step_sizes: list[float], bias_correction2_sqrts: list[float], *,
                         lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
        """The AdamW update of one bucket, one compiled pass per parameter."""
        update = compiled_adamw_update()
        device = params[0].device
        # Low-precision parameters are updated in float32 arithmetic, as the eager foreach ops do.
        dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32

        def scalar(x: float) -> Tensor:  # filled on the device: a copy from the host could wait for the GPU
            return torch.full((), x, device=device, dtype=dtype)

        fixed = dict(decay=scalar(1.0 - lr * weight_decay), one_minus_beta1=scalar(1.0 - beta1),
                     beta2=scalar(beta2), one_minus_beta2=scalar(1.0 - beta2), eps=scalar(eps))
        per_step: dict[tuple[float, float], dict[str, Tensor]] = {}  # parameters usually share one step count
        for p, g, m, v, step_size, bc2 in zip(params, grads, exp_avgs, exp_avg_sqs, step_sizes,
                                              bias_correction2_sqrts):
            if (step_size, bc2) not in per_step:
                per_step[(step_size, bc2)] = dict(step_size=scalar(step_size), bias_correction2_sqrt=scalar(bc2))
            run_compiled(update, _flat(p), _flat(g), _flat(m), _flat(v), **fixed, **per_step[(step_size, bc2)])


def adamw_problems(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> list[str]:
    """What is wrong with AdamW's hyperparameters, one phrase per problem (empty when they are valid)."""
    problems = []
    if not lr >= 0.0:
        problems.append(f"lr must be >= 0 (got {lr})")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        problems.append(f"betas must be two numbers in [0, 1) (got {betas})")
    if not eps >= 0.0:
        problems.append(f"eps must be >= 0 (got {eps})")
    if not weight_decay >= 0.0:
        problems.append(f"weight_decay must be >= 0 (got {weight_decay})")
    return problems


def dense_params_by_device_and_dtype(params: Iterable[Tensor], optimizer_name: str) -> list[list[Tensor]]:
    """The parameters that have a gradient, in lists of one (device, dtype) each (what `torch._foreach_*`
    ops need), in their given order; a sparse gradient is refused in one line naming the optimizer."""
    buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = defaultdict(list)
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise OptimizerConfigError(f"{optimizer_name} does not support sparse gradients; use dense embeddings.")
        buckets[(p.device, p.dtype)].append(p)
    return list(buckets.values())


def adamw_update_group(state: dict[Tensor, dict[str, Any]], group: dict[str, Any], compile: bool = False) -> None:  # noqa: A002
    """AdamW's update of one parameter group (keys lr, betas, eps, weight_decay, params), with its per-parameter
    state (step, exp_avg, exp_avg_sq) in `state`: `AdamW.step` per group, and Muon's update of its AdamW groups."""
    lr = float(group["lr"])
    beta1, beta2 = group["betas"]
    for params in dense_params_by_device_and_dtype(group["params"], "AdamW"):
        grads = [p.grad for p in params]
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            moments = state[p]
            if not moments:
                moments["step"] = 0
                moments["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                moments["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            moments["step"] = int(moments["step"]) + 1
            exp_avgs.append(moments["exp_avg"])
            exp_avg_sqs.append(moments["exp_avg_sq"])
            steps.append(moments["step"])

        step_sizes = [-lr / (1.0 - beta1**t) for t in steps]
        bias_correction2_sqrts = [(1.0 - beta2**t) ** 0.5 for t in steps]
        rows = list(zip(params, grads, exp_avgs, exp_avg_sqs, step_sizes, bias_correction2_sqrts))
        hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"])
        if compile:
            compiled, eager = [], []
            for row in rows:
                (compiled if _worth_compiling(*row[:4]) else eager).append(row)
            if compiled:
                AdamW._update_compiled(*map(list, zip(*compiled)), **hyper)
            rows = eager
        if rows:
            tile = TILE_ELEMENTS_CPU if params[0].device.type == "cpu" else TILE_ELEMENTS_ACCELERATOR
            for tiles in _tiles([list(column) for column in zip(*rows)], tile):
                AdamW._update_tiles(*tiles, **hyper)


def _one_or_each(values: list[float]) -> float | list[float]:
    """The one number when all of `values` are equal (the usual case: every parameter has taken the same
    number of steps), else the list: a foreach op converts a list to tensors, one per entry, on every call."""
    return values[0] if values.count(values[0]) == len(values) else values


def _worth_compiling(param: Tensor, *others: Tensor) -> bool:
    """Whether a parameter goes to the compiled update: at least `COMPILE_MIN_ELEMENTS` elements, and
    it, its gradient and moments plain contiguous tensors, which `_flat` turns into 1-D aliases."""
    return param.numel() >= COMPILE_MIN_ELEMENTS and all(
        type(t) in (Tensor, nn.Parameter) and t.is_contiguous() for t in (param, *others))


def _flat(tensor: Tensor) -> Tensor:
    """A 1-D plain tensor sharing `tensor`'s memory. Not a view object: torch.compile would guard on
    a view's base shape (and on a Parameter's exact shape), compiling once per shape; this way one
    compiled loop serves every size."""
    return tensor.view(-1).detach()


def _tiles(columns: list[list[Any]], tile: int) -> Iterator[list[list[Any]]]:
    """Split parallel lists (tensors of equal shapes per row, or per-row numbers) into tiles of at most
    `tile` elements: small tensors are grouped, large ones cut into flat views of the same storage.

    Each tile's temporaries (the denominators) are then at most `tile` elements, and on a CPU
    all of a tile's operations run while its data is still in cache.
    """
    current: list[list[Any]] = [[] for _ in columns]
    size = 0
    for row in zip(*columns):
        numel = row[0].numel()
        split = numel > tile and all(item.is_contiguous() for item in row if isinstance(item, Tensor))
        for start in range(0, numel, tile if split else max(numel, 1)):
            end = min(start + tile, numel) if split else numel
            for out, item in zip(current, row):
                out.append(item.view(-1)[start:end] if split and isinstance(item, Tensor) else item)
            size += end - start
            if size >= tile:
                yield current
                current, size = [[] for _ in columns], 0
    if size:
        yield current


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into a decayed and a non-decayed group.

    Matrices of Linear-like layers are decayed; norms' weights, every bias and embedding
    tables (including a tied output layer, which is the embedding table) are not.
    Empty groups are left out.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        is_table = "Embedding" in type(module).__name__
        is_norm = "Norm" in type(module).__name__
        for name, p in module.named_parameters(recurse=False):
            if is_table or is_norm or name == "bias" or p.dim() < 2:
                no_decay_ids.add(id(p))
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if id(p) in no_decay_ids else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
