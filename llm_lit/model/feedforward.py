"""Feed-forward layers: `SwiGLU` (Llama), `GeluMLP` (GPT-2) and `ReluSquaredMLP` (Primer,
modded-nanogpt), from-scratch activations.

The torch-kernel versions of the first two (`TorchSwiGLU`, `TorchGeluMLP`, in `torch_kernels.py`)
only swap `activation` for torch's own. ReLU^2 has no torch kernel that would do better than its
two elementwise ops, so both settings of `kernels` build `ReluSquaredMLP`.
"""

from __future__ import annotations

from torch import Tensor, nn

from llm_lit.model.functional import gelu, relu_squared, silu
from llm_lit.model.layers import Linear


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x) with `w1, w3: d_model -> d_ff` and `w2: d_ff -> d_model`.

    Shapes: `(..., d_model) -> (..., d_model)`.
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, init_std: float = 0.02,
                 output_init_std: float | None = None) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, bias=bias, init_std=init_std)
        self.w2 = Linear(d_ff, d_model, bias=bias, init_std=init_std if output_init_std is None else output_init_std)
        self.w3 = Linear(d_model, d_ff, bias=bias, init_std=init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.activation(self.w1(x)) * self.w3(x))

    def activation(self, x: Tensor) -> Tensor:
        """silu(x) = x * sigmoid(x)."""
        return silu(x)


class GeluMLP(nn.Module):
    """w2(gelu(w1 x)) with `w1: d_model -> d_ff`, `w2: d_ff -> d_model`.

    Shapes: `(..., d_model) -> (..., d_model)`.
    `approximate` is 'none' (exact, erf-based GELU) or 'tanh' (GPT-2's tanh approximation).
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, init_std: float = 0.02,
                 output_init_std: float | None = None, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate
        self.w1 = Linear(d_model, d_ff, bias=bias, init_std=init_std)
        self.w2 = Linear(d_ff, d_model, bias=bias, init_std=init_std if output_init_std is None else output_init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.activation(self.w1(x)))

    def activation(self, x: Tensor) -> Tensor:
        """gelu(x), exact or tanh-approximated as `approximate` says."""
        return gelu(x, self.approximate)


class ReluSquaredMLP(nn.Module):
    """w2(relu(w1 x)^2) with `w1: d_model -> d_ff`, `w2: d_ff -> d_model` (Primer's squared ReLU).

    Shapes: `(..., d_model) -> (..., d_model)`.
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False, init_std: float = 0.02,
                 output_init_std: float | None = None) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, bias=bias, init_std=init_std)
        self.w2 = Linear(d_ff, d_model, bias=bias, init_std=init_std if output_init_std is None else output_init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(self.activation(self.w1(x)))

    def activation(self, x: Tensor) -> Tensor:
        """max(x, 0)^2."""
        return relu_squared(x)
