"""Position schemes: RoPE, ALiBi, sinusoidal tables (learned positions are a plain `Embedding`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """RoPE: rotates adjacent pairs `(x[2i], x[2i+1])` of each head by `pos * theta^(-2i/d_head)`.

    Angles are computed from the positions on every call (a `(seq, d_head/2)` outer product,
    negligible next to attention), so any explicit `token_positions` work, including ones past
    the context length. No parameters; `inv_freq` is a non-persistent buffer.
    """

    def __init__(self, d_head: int, theta: float = 10000.0, device: torch.device | None = None) -> None:
        super().__init__()
        if d_head % 2:
            raise ValueError(f"RoPE needs an even head size, got {d_head}.")
        self.d_head = d_head
        self.theta = theta
        exponents = torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head
        self.register_buffer("inv_freq", theta ** -exponents, persistent=False)

    def cos_sin(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Cosine and sine of the rotation angles.

        Shapes: `positions (seq,)` or `(batch, seq)` -> two tensors `(..., seq, d_head/2)` in float32.
        """
        angles = positions.to(torch.float32).unsqueeze(-1) * self.inv_freq.to(torch.float32)
        return angles.cos(), angles.sin()

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Apply the rotation to `x (batch, heads, seq, d_head)`.

        `cos`/`sin` are `(seq, d_head/2)` (shared by the batch) or `(batch, seq, d_head/2)`.
        """
        if cos.dim() == 3:  # per-row positions: broadcast over heads
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate `x (batch, heads, seq, d_head)` at `positions (seq,)` or `(batch, seq)`."""
        cos, sin = self.cos_sin(positions)
        return self.rotate(x, cos, sin)


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi head slopes `(n_heads,)`: the geometric sequence 2^(-8/n), 2^(-16/n), ...

    For a head count that is not a power of two, the slopes of the closest smaller power of
    two are followed by every other slope of twice that power (as in the ALiBi paper).
    """

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest < n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, query_positions: Tensor, key_positions: Tensor) -> Tensor:
    """Additive attention bias `-slope_h * (query_pos - key_pos)`.

    Shapes: `slopes (heads,)`, positions `(q,)`/`(k,)` or `(batch, q)`/`(batch, k)`
    -> `(heads, q, k)` or `(batch, heads, q, k)`, float32.
    """
    distance = query_positions.unsqueeze(-1) - key_positions.unsqueeze(-2)  # (..., q, k)
    return -slopes.view(-1, 1, 1) * distance.unsqueeze(-3).to(torch.float32)


def sinusoidal_table(num_positions: int, dim: int, device: torch.device | None = None) -> Tensor:
    """The fixed "Attention is all you need" table `(num_positions, dim)`.

    `table[pos, 2i] = sin(pos / 10000^(2i/dim))`, `table[pos, 2i+1] = cos(pos / 10000^(2i/dim))`.
    """
    positions = torch.arange(num_positions, device=device, dtype=torch.float32).unsqueeze(-1)
    inv_freq = 10000.0 ** -(torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    angles = positions * inv_freq
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position vectors, added to the token embeddings; no parameters.

    Shapes: `positions (seq,)` or `(batch, seq)` -> `(..., seq, dim)`.
    Positions past the precomputed table are computed on the fly.
    """

    def __init__(self, num_positions: int, dim: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(num_positions, dim, device), persistent=False)

    def forward(self, positions: Tensor, max_position: int | None = None) -> Tensor:
        """`max_position` (if known) skips a device sync when checking the table covers the positions."""
        if max_position is None:
            max_position = int(positions.max()) if positions.numel() else 0
        if max_position < self.table.shape[0]:
            return self.table[positions]
        return sinusoidal_table(max_position + 1, self.dim, positions.device)[positions]
