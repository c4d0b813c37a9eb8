"""From-scratch activation, softmax and loss functions (the reference math).

Each function is tested equal to its `torch.nn.functional` counterpart.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along `dim`, computed as exp(x - max) / sum(exp(x - max)) so large logits never overflow.

    Shapes: any `(...)` in, the same shape out.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Log-softmax along `dim`: (x - max) - log(sum(exp(x - max))).

    Shapes: any `(...)` in, the same shape out.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of `targets` under `logits`, skipping targets equal to `ignore_index`.

    Computed in float32 whatever the logits' dtype, through log-sum-exp, so it stays exact
    for shifted (+100) or scaled (x1000) logits.

    Shapes: `logits (..., vocab)`, `targets (...)` of integer ids; returns a scalar.
    When every target is ignored the result is NaN (0/0), as in PyTorch.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    safe_targets = torch.where(keep, targets, torch.zeros_like(targets))
    max_logit = logits.amax(dim=-1, keepdim=True)
    log_normalizer = (logits - max_logit).exp().sum(dim=-1).log() + max_logit.squeeze(-1)
    target_logit = logits.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    losses = (log_normalizer - target_logit) * keep
    return losses.sum() / keep.sum()


def silu(x: Tensor) -> Tensor:
    """SiLU (swish): x * sigmoid(x). Shapes: any `(...)`, preserved."""
    return x * torch.sigmoid(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: x * Phi(x). Shapes: any `(...)`, preserved.

    `approximate='none'`: exact, 0.5 * x * (1 + erf(x / sqrt(2))).
    `approximate='tanh'`: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), GPT-2's form.
    """
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    return 0.5 * x * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def relu_squared(x: Tensor) -> Tensor:
    """ReLU squared: max(x, 0)^2. Shapes: any `(...)`, preserved."""
    return x.clamp(min=0).square()


def soft_cap(logits: Tensor, cap: float) -> Tensor:
    """Smooth cap at +-cap: cap * tanh(logits / cap). Near-identity for |logits| << cap.

    Shapes: any `(...)`, preserved. Its derivative is 1 - tanh^2(logits / cap) = 1 - (out / cap)^2.
    """
    return cap * torch.tanh(logits / cap)
