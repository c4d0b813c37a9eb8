"""From-scratch building blocks: `Linear`, `Embedding`, `RMSNorm`, `LayerNorm`.

Weight layouts follow the field's standard so state dicts interoperate:
`Linear.weight` is `(out_features, in_features)`, `Embedding.weight` is `(num_embeddings, dim)`.
The norms take `fused=True` to run torch's fused kernel instead of the from-scratch math;
tests prove both equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Linear(nn.Module):
    """y = x @ W.T (+ b), with `W (out_features, in_features)` drawn from N(0, init_std).

    Shapes: `(..., in_features) -> (..., out_features)`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, init_std: float = 0.02,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.init_std = init_std
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights from N(0, init_std), bias zero."""
        nn.init.normal_(self.weight, mean=0.0, std=self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.bias is None:
            return x @ self.weight.T
        # addmm does the product and the bias in one kernel; the math is x @ W.T + b.
        flat = torch.addmm(self.bias, x.reshape(-1, self.in_features), self.weight.T)
        return flat.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(nn.Module):
    """Lookup table `weight (num_embeddings, embedding_dim)` drawn from N(0, init_std).

    Shapes: integer ids `(...)` -> `(..., embedding_dim)`.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float = 0.02,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.init_std = init_std
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights from N(0, init_std)."""
        nn.init.normal_(self.weight, mean=0.0, std=self.init_std)

    def forward(self, ids: Tensor, sparse_grad: bool = False) -> Tensor:
        """Rows of the table for `ids`. With `sparse_grad`, the table's gradient from this lookup is a
        sparse tensor of just those rows; only for a table whose dense gradient also comes from
        elsewhere in the same graph (a tied output layer), so the sum reaching `.grad` is dense."""
        if sparse_grad:
            return _LookupWithSparseGrad.apply(self.weight, ids)
        return self.weight[ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class _LookupWithSparseGrad(torch.autograd.Function):
    """`weight[ids]`, whose backward gives `weight`'s gradient as a sparse COO tensor `(rows, dim)`
    holding only the looked-up rows, instead of a dense table of zeros with those rows added in."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor) -> Tensor:  # noqa: ANN001 - autograd's ctx
        ctx.save_for_backward(ids)
        ctx.num_rows = weight.shape[0]
        return weight[ids]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001 - autograd's ctx
        (ids,) = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])
        table_grad = torch.sparse_coo_tensor(ids.reshape(1, -1), rows, (ctx.num_rows, rows.shape[1]),
                                             check_invariants=False)
        return table_grad, None


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2, -1) + eps) * weight, computed in float32 and cast back to x's dtype.

    Shapes: `(..., dim) -> (..., dim)`. `fused=True` uses `torch.nn.functional.rms_norm`.
    """

    def __init__(self, dim: int, eps: float = 1e-5, fused: bool = False,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """Weight one."""
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused and x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (self.dim,), self.weight, self.eps)
        x32 = x.float()
        if self.fused:
            out = F.rms_norm(x32, (self.dim,), self.weight.float(), self.eps)
        else:
            out = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight.float()
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, fused={self.fused}"


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight (+ bias) over the last dim, biased variance.

    Shapes: `(..., dim) -> (..., dim)`. `fused=True` uses `torch.nn.functional.layer_norm`.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, fused: bool = False,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype)) if bias else None

    def reset_parameters(self) -> None:
        """Weight one, bias zero."""
        nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        centered = x - mean
        var = centered.pow(2).mean(dim=-1, keepdim=True)
        out = centered * torch.rsqrt(var + self.eps) * self.weight
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}, fused={self.fused}"
