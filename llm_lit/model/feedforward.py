"""Feed-forward layers: `SwiGLU` (Llama) and `GeluMLP` (GPT-2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from llm_lit.model.functional import gelu, silu
from llm_lit.model.layers import Linear


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x) with `w1, w3: d_model -> d_ff` and `w2: d_ff -> d_model`.

    Shapes: `(..., d_model) -> (..., d_model)`. `fused=True` uses `torch.nn.functional.silu`.
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, fused: bool = False,
                 init_std: float = 0.02, output_init_std: float | None = None) -> None:
        super().__init__()
        self.fused = fused
        self.w1 = Linear(d_model, d_ff, bias=bias, init_std=init_std)
        self.w2 = Linear(d_ff, d_model, bias=bias, init_std=output_init_std or init_std)
        self.w3 = Linear(d_model, d_ff, bias=bias, init_std=init_std)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.w1(x)
        gate = F.silu(gate) if self.fused else silu(gate)
        return self.w2(gate * self.w3(x))


class GeluMLP(nn.Module):
    """w2(gelu(w1 x)) with `w1: d_model -> d_ff`, `w2: d_ff -> d_model`.

    Shapes: `(..., d_model) -> (..., d_model)`. `fused=True` uses `torch.nn.functional.gelu`.
    `approximate` is 'none' (exact, erf-based GELU) or 'tanh' (GPT-2's tanh approximation).
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, fused: bool = False,
                 init_std: float = 0.02, output_init_std: float | None = None, approximate: str = "none") -> None:
        super().__init__()
        self.fused = fused
        self.approximate = approximate
        self.w1 = Linear(d_model, d_ff, bias=bias, init_std=init_std)
        self.w2 = Linear(d_ff, d_model, bias=bias, init_std=output_init_std or init_std)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.w1(x)
        hidden = F.gelu(hidden, approximate=self.approximate) if self.fused else gelu(hidden, self.approximate)
        return self.w2(hidden)
