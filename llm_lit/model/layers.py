"""From-scratch building blocks: `Linear`, `Embedding`, `RMSNorm`, `LayerNorm`.

Weight layouts follow the field's standard so state dicts interoperate:
`Linear.weight` is `(out_features, in_features)`, `Embedding.weight` is `(num_embeddings, dim)`.
The norms' torch-kernel versions (`TorchRMSNorm`, `TorchLayerNorm`) are in `torch_kernels.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Linear(nn.Module):
    """y = x @ W.T (+ b), with `W (out_features, in_features)` drawn from N(0, init_std) (zeros when init_std is 0).

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

    def forward(self, ids: Tensor) -> Tensor:
        return self.weight[ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2, -1) + eps) * weight, computed in float32 and cast back to x's dtype.

    Shapes: `(..., dim) -> (..., dim)`.
    """

    def __init__(self, dim: int, eps: float = 1e-5, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """Weight one."""
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        out = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight.float()
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight (+ bias) over the last dim, biased variance.

    Shapes: `(..., dim) -> (..., dim)`.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(dim, device=device, dtype=dtype)) if bias else None

    def reset_parameters(self) -> None:
        """Weight one, bias zero."""
        nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        centered = x - mean
        var = centered.pow(2).mean(dim=-1, keepdim=True)
        out = centered * torch.rsqrt(var + self.eps) * self.weight
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}"
