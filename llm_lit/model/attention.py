"""Scaled dot-product attention (from scratch), `CausalSelfAttention` and its `KVCache`.

`TorchSDPAttention` (in `torch_kernels.py`) is `CausalSelfAttention` with `attend` routed
through `torch.nn.functional.scaled_dot_product_attention` (flash kernels on GPU); the
from-scratch `scaled_dot_product_attention` below is the reference it is tested equal to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_lit.errors import UserError
from llm_lit.model.functional import softmax
from llm_lit.model.layers import Linear
from llm_lit.model.positional import RotaryEmbedding


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                                 dropout_p: float = 0.0) -> Tensor:
    """softmax(Q K^T / sqrt(d_k) + mask) V over any leading dims.

    Shapes: `q (..., q_len, d_k)`, `k (..., k_len, d_k)`, `v (..., k_len, d_v)` -> `(..., q_len, d_v)`.
    `mask` broadcasts to `(..., q_len, k_len)`: a boolean mask means True = may attend; a float
    mask is added to the scores (use -inf to forbid), as in PyTorch's own function.
    """
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    weights = softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v


def causal_mask(q_len: int, k_len: int, device: torch.device | None = None) -> Tensor:
    """Boolean `(q_len, k_len)` mask, True where query i (the last q_len of k_len positions) may see key j."""
    offset = k_len - q_len
    q_index = torch.arange(q_len, device=device).unsqueeze(-1) + offset
    return torch.arange(k_len, device=device) <= q_index


class KVCache:
    """Preallocated keys and values of every layer, filled as generation proceeds.

    Each layer's `keys[i]`/`values[i]` is `(batch, n_kv_heads, max_seq_len, d_head)`;
    `positions (batch, max_seq_len)` records the token position of each cached slot (ALiBi
    needs it) and `length` counts the filled slots. A forward pass appends its tokens and
    advances `length`; `reset()` empties the cache without freeing memory.
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_seq_len: int, d_head: int,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        shape = (batch_size, n_kv_heads, max_seq_len, d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.positions = torch.zeros(batch_size, max_seq_len, device=device, dtype=torch.long)
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len
        self.length = 0

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write `k, v (batch, n_kv_heads, seq, d_head)` after the filled slots of `layer`;
        return every cached key and value so far, `(batch, n_kv_heads, length + seq, d_head)`."""
        end = self.length + k.shape[-2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark `n` more slots as filled (called once per forward, after every layer wrote them)."""
        self.length += n

    def reset(self) -> None:
        """Forget every cached token."""
        self.length = 0


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with grouped-query heads, RoPE/ALiBi hooks and a KV cache.

    Projections `q_proj (d_model -> n_heads*d_head)`, `k_proj`/`v_proj (d_model -> n_kv_heads*d_head)`
    and `output_proj (d_model -> d_model)`; heads are split after the projections. With QK-norm,
    `q_norm` and `k_norm` (norms over `d_head`, shared by the heads) normalise each head's queries
    and keys before RoPE: `q = q_norm(q_proj(x)_h)`, `k = k_norm(k_proj(x)_h)`.
    Shapes: `x (batch, seq, d_model) -> (batch, seq, d_model)`.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = False,
                 dropout: float = 0.0, init_std: float = 0.02, output_init_std: float | None = None,
                 q_norm: nn.Module | None = None, k_norm: nn.Module | None = None) -> None:
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if d_model % n_heads or n_heads % n_kv_heads:
            raise UserError(
                f"Attention needs n_heads ({n_heads}) to divide d_model ({d_model}) and n_kv_heads ({n_kv_heads}) "
                "to divide n_heads; choose compatible sizes."
            )
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        kv_dim = n_kv_heads * self.d_head
        self.q_proj = Linear(d_model, d_model, bias=bias, init_std=init_std)
        self.k_proj = Linear(d_model, kv_dim, bias=bias, init_std=init_std)
        self.v_proj = Linear(d_model, kv_dim, bias=bias, init_std=init_std)
        self.output_proj = Linear(d_model, d_model, bias=bias,
                                  init_std=init_std if output_init_std is None else output_init_std)
        self.q_norm = q_norm if q_norm is not None else nn.Identity()  # no parameters, no state-dict entries
        self.k_norm = k_norm if k_norm is not None else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, mask: Tensor | None = None,
                is_causal: bool = True, kv_cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """Attend causally.

        Args:
            x: `(batch, seq, d_model)`.
            rope: `(cos, sin)` from `RotaryEmbedding.cos_sin`, or None for no rotation.
            mask: boolean (True = may attend) or additive float mask broadcastable to
                `(batch, heads, seq, k_len)`; used when `is_causal` is False.
            is_causal: plain causal attention with queries and keys aligned (no cache, no bias).
            kv_cache: cache to append this step's keys/values to and attend over.
            layer: index of this layer in the cache.
        """
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.d_head).transpose(1, 2)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q = RotaryEmbedding.rotate(q, *rope)
            k = RotaryEmbedding.rotate(k, *rope)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)
            if k.dtype != q.dtype:  # e.g. a float32 cache read under bf16 autocast
                k, v = k.to(q.dtype), v.to(q.dtype)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        out = self.attend(q, k, v, None if is_causal else mask, is_causal, dropout_p)
        return self.output_proj(out.transpose(1, 2).reshape(batch, seq, self.n_heads * self.d_head))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
               dropout_p: float) -> Tensor:
        """softmax(q k^T / sqrt(d_head) + mask) v, each kv head serving its group of query heads.

        Shapes: `q (batch, n_heads, seq, d_head)`, `k, v (batch, n_kv_heads, k_len, d_head)`
        -> `(batch, n_heads, seq, d_head)`; `mask` as in `forward`, None when `is_causal`.
        """
        if self.n_kv_heads != self.n_heads:
            k, v = self.repeat_kv(k), self.repeat_kv(v)
        if is_causal:
            mask = causal_mask(q.shape[-2], k.shape[-2], q.device)
        return scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)

    def repeat_kv(self, t: Tensor) -> Tensor:
        """`(batch, n_kv_heads, seq, d_head) -> (batch, n_heads, seq, d_head)`, each kv head serving its group."""
        return t.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
