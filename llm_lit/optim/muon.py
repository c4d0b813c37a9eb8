"""Muon (Keller Jordan et al., 2024): momentum whose update is orthogonalised by a Newton–Schulz
iteration, for the 2-D hidden weight matrices of a transformer; our AdamW for every other
parameter (embeddings, output head, norms, biases), in one optimizer.

Why: the gradient of a weight matrix tends to be dominated by a few directions (it is nearly
low rank); replacing the update `U = P S Q^T` by its orthogonal factor `P Q^T` gives every
direction the same step size, so the rare directions learn as fast as the common ones. An SVD
per step is too slow; a few steps of an odd matrix polynomial, run in bfloat16 (float32 on a CPU
without bfloat16 arithmetic), come close enough.

Which parameters are Muon's is the caller's choice (`llm_lit.training.module` marks the matrices inside
the transformer blocks); this file knows nothing about the model. The tests check the update
against a direct formula (running-sum momentum, the orthogonal factor by SVD) in float64, and
bitwise against `torch.optim.Muon` (torch >= 2.9) in bfloat16.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Iterable

import torch
from torch import Tensor

from llm_lit.optim.adamw import OptimizerConfigError, adamw_problems, adamw_update_group

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch built without torch.distributed: nothing can be sharded
    DTensor = ()

#: Coefficients `(a, b, c)` of the quintic Newton–Schulz step `f(s) = a s + b s^3 + c s^5`, chosen (by
#: Keller Jordan) to make `f`'s slope at 0 large, so that small singular values grow fast, at the price of
#: not converging to exactly 1: after 5 steps every `s` in [1e-3, 1] lies in [0.47, 1.21], and once inside
#: [0.68, 1.14] it stays there.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)

#: Why Muon is refused for sharded parameters (FSDP), and what to do instead.
SHARDED_REFUSAL = ("Muon orthogonalises whole weight matrices, but FSDP shards them across devices; train with "
                   "--trainer.strategy ddp (or one device), or choose model.optimizer.name adamw or sgd.")

#: The dtypes the Newton–Schulz iteration may run in, by name (names keep checkpoints plain data);
#: 'auto' is chosen per device by `ns_dtype_on`.
NS_DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}

#: CPU feature flags (Linux's /proc/cpuinfo) of bfloat16 matrix arithmetic in hardware: x86's
#: AVX512-BF16 and AMX, Arm's BF16 extension.
NATIVE_BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def ns_dtype_on(name: str, device: torch.device) -> torch.dtype:
    """The dtype the Newton–Schulz iteration runs in for `ns_dtype=name` on `device`.

    'auto' is bfloat16 where the device multiplies bfloat16 matrices in hardware (CUDA GPUs from
    Ampere on, CPUs with AVX512-BF16, AMX or Arm's BF16, other accelerators), else float32: an
    emulated bfloat16 matmul is several times slower than a float32 one (3.7x for the shakespeare
    config's matrices on an AVX-512 CPU without BF16).
    """
    if name != "auto":
        return NS_DTYPES[name]
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    elif device.type == "cpu":
        native = bool(cpu_flags() & NATIVE_BFLOAT16_CPU_FLAGS)
    else:
        native = True
    return torch.bfloat16 if native else torch.float32


@cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them in /proc/cpuinfo ('flags' on x86, 'Features' on Arm);
    empty where there is no such file."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def orthogonalise(update: Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximately the orthogonal factor `P Q^T` of a matrix `update = P S Q^T`, by `steps` quintic
    Newton–Schulz steps computed in `dtype`.

        X_0 = update / (||update||_F + 1e-7)          (transposed first when rows > cols)
        X_{i+1} = a X_i + (b A_i + c A_i^2) X_i,      A_i = X_i X_i^T

    Each step maps every singular value `s` of `X` to `f(s) = a s + b s^3 + c s^5` and keeps the
    singular vectors, so the result is `P diag(f^steps(s / ||update||_F)) Q^T`. Normalising by the
    Frobenius norm puts every `s` in [0, 1] first. The wide orientation makes `A` the smaller
    Gram matrix.

    Args:
        update: a `(rows, cols)` matrix.
        steps: Newton–Schulz steps.
        dtype: the dtype every step is computed in.

    Returns:
        A `(rows, cols)` tensor of `dtype`.
    """
    a, b, c = NS_COEFFICIENTS
    x = update.to(dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2, rounded once
        x = torch.addmm(x, polynomial, x, beta=a)  # a X + (b A + c A^2) X
    return x.T if tall else x


def newton_schulz_flops(rows: int, cols: int, steps: int = 5) -> int:
    """Matmul FLOPs of `orthogonalise` on a `(rows, cols)` matrix: with `m = min(rows, cols)` and
    `n = max(rows, cols)` (the wide orientation), each step computes `A = X X^T` (`2 m^2 n`), `A A`
    (`2 m^3`) and `(b A + c A^2) X` (`2 m^2 n`), so `steps (4 m^2 n + 2 m^3)` in all (the scalings and
    additions are elementwise and not counted, as for the model's FLOPs)."""
    m, n = min(rows, cols), max(rows, cols)
    return steps * (4 * m * m * n + 2 * m ** 3)


def shape_scale(rows: int, cols: int) -> float:
    """`sqrt(max(1, rows / cols))`: an orthogonal `(rows, cols)` matrix has an RMS entry of
    `1/sqrt(max(rows, cols))`; times this factor, the update's RMS entry is `1/sqrt(cols)` (one over the
    square root of the fan-in) whatever the shape, so a layer that widens the stream (`rows > cols`, e.g. an
    MLP's up-projection) moves as much per input as a square one."""
    return max(1.0, rows / cols) ** 0.5


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked `"muon": True` (2-D matrices), AdamW for the others.

    Per matrix `W` of shape `(rows, cols)` with gradient `G`, at each step, with momentum `mu`:
        B <- mu B + (1 - mu) G                          (the momentum buffer, B = 0 before the first step)
        U <- (1 - mu) G + mu B   with Nesterov,         U <- B   without
        O <- orthogonalise(U, ns_steps, ns_dtype)       (see `orthogonalise`)
        W <- W * (1 - lr * weight_decay)
        W <- W - lr * sqrt(max(1, rows / cols)) * O

    The buffer is an average (`lerp`) rather than a sum (`mu B + G`): the two differ only by the
    factor `1 - mu`, which the orthogonalisation's normalisation removes. Groups marked
    `"muon": False` follow `AdamW`'s math exactly (same code), with their own lr, betas, eps and
    weight_decay.

    Args:
        params: parameters (all Muon's) or group dicts; a group's `"muon"` key (default True) says which
            update it gets, and any key below may be set per group.
        lr: learning rate of the Muon groups.
        momentum: momentum coefficient `mu` in [0, 1).
        nesterov: use the Nesterov form of the momentum.
        ns_steps: Newton–Schulz steps per update.
        ns_dtype: dtype of the Newton–Schulz iteration: 'auto' (bfloat16 where the device has it in
            hardware, else float32; see `ns_dtype_on`), 'bfloat16', 'float32' or 'float64'.
        weight_decay: decoupled weight decay of every group (a group's own value wins).
        adamw_lr: learning rate of the AdamW groups that do not set their own.
        betas, eps: the AdamW groups' moment decay rates and denominator epsilon.
        compile: run the AdamW groups' update compiled (see `AdamW`).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 0.02, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, ns_dtype: str = "auto", weight_decay: float = 0.0,
                 adamw_lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 compile: bool = False) -> None:  # noqa: A002 - named like AdamW's
        problems = [f"adamw_{p}" if p.startswith("lr") else p for p in adamw_problems(adamw_lr, betas, eps, weight_decay)]
        if not lr >= 0.0:
            problems.append(f"lr must be >= 0 (got {lr})")
        if not 0.0 <= momentum < 1.0:
            problems.append(f"momentum must be in [0, 1) (got {momentum})")
        if not (isinstance(ns_steps, int) and ns_steps >= 1):
            problems.append(f"ns_steps must be an integer >= 1 (got {ns_steps})")
        if ns_dtype not in NS_DTYPES:
            problems.append(f"ns_dtype must be one of {', '.join(NS_DTYPES)} (got {ns_dtype!r})")
        if problems:
            raise OptimizerConfigError("Invalid Muon arguments: " + "; ".join(problems) + "; fix them and try again.")
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            group.setdefault("muon", True)
            if not group["muon"]:
                group.setdefault("lr", adamw_lr)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_dtype=ns_dtype,
                        weight_decay=weight_decay, betas=tuple(betas), eps=eps)
        super().__init__(groups, defaults)
        self.compile = compile
        for group in self.param_groups:
            if group["muon"]:
                _check_matrices(group["params"])

    def flops_per_step(self) -> int:
        """Matmul FLOPs of one step: the Newton–Schulz iterations of every Muon matrix (the AdamW part and the
        momentum are elementwise)."""
        return sum(newton_schulz_flops(*p.shape, group["ns_steps"]) for group in self.param_groups if group["muon"]
                   for p in group["params"])

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - signature of torch.optim.Optimizer.step
        """One update of every parameter that has a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._update_muon_group(group)
            else:
                adamw_update_group(self.state, group, self.compile)
        return loss

    def _update_muon_group(self, group: dict[str, Any]) -> None:
        lr, momentum, weight_decay = float(group["lr"]), group["momentum"], group["weight_decay"]
        params, updates = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise OptimizerConfigError("Muon does not support sparse gradients; use dense weights.")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffer = state["momentum_buffer"]
            buffer.lerp_(p.grad, 1.0 - momentum)
            params.append(p)
            updates.append(torch.lerp(p.grad, buffer, momentum) if group["nesterov"] else buffer)
        if not params:
            return
        dtype = ns_dtype_on(group["ns_dtype"], params[0].device)
        for p, orthogonal in zip(params, self.orthogonalised(updates, group["ns_steps"], dtype)):
            if weight_decay != 0.0:
                p.mul_(1.0 - lr * weight_decay)
            p.add_(orthogonal.to(p.dtype), alpha=-lr * shape_scale(*p.shape))

    def orthogonalised(self, updates: list[Tensor], steps: int, dtype: torch.dtype) -> list[Tensor]:
        """`orthogonalise(u, steps, dtype)` of every update `u` (each `(rows, cols)`), in order."""
        return [orthogonalise(update, steps, dtype) for update in updates]


def _check_matrices(params: list[Tensor]) -> None:
    """Refuse what Muon cannot orthogonalise: anything but a whole, unsharded 2-D matrix."""
    for p in params:
        if isinstance(p, DTensor):
            raise OptimizerConfigError(SHARDED_REFUSAL)
        if p.dim() != 2:
            raise OptimizerConfigError(f"Muon updates 2-D matrices only, but got a parameter of shape "
                                       f"{tuple(p.shape)}; put it in a group with 'muon': False (AdamW).")


def muon_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters Muon takes with model.optimizer.name muon: the 2-D weight matrices inside the
    transformer blocks (attention and feed-forward projections). Embeddings, the output head, norms
    and biases stay with AdamW."""
    return [p for name, p in model.named_parameters() if name.startswith("layers.") and p.dim() == 2]
