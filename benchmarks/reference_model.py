"""The reference every speed benchmark compares against: our model's shape built from stock PyTorch.

`ReferenceLM(config)` has exactly the parameters of `TransformerLM(config)` (same shapes,
same count) but is made of `nn.Embedding`, `nn.Linear` (one fused qkv, as nanoGPT does),
`nn.LayerNorm`/`nn.RMSNorm`, `F.gelu`/`F.silu` and `F.scaled_dot_product_attention`, with
the plain `F.cross_entropy` loss. `reference_optimizer` is `torch.optim.AdamW` (fused where the
device supports it) over the same decayed/non-decayed groups as ours.

Supports the positions the benchmarks use: learned and RoPE (plus none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llm_lit.model import ModelConfig


def rope_cos_sin(seq: int, d_head: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `(seq, d_head/2)` of the RoPE angles at positions 0..seq-1."""
    inv_freq = theta ** -(torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head)
    angles = torch.arange(seq, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of `x (batch, heads, seq, d_head)`."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class ReferenceBlock(nn.Module):
    """Pre-norm block from stock modules: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        norm = (lambda: nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias)) if c.norm == "layernorm" \
            else (lambda: nn.RMSNorm(c.d_model, eps=c.norm_eps))
        self.n_heads, self.n_kv_heads, self.d_head = c.n_heads, c.n_kv_heads, c.d_head
        self.ln1 = norm()
        self.qkv = nn.Linear(c.d_model, (c.n_heads + 2 * c.n_kv_heads) * c.d_head, bias=c.bias)
        self.proj = nn.Linear(c.d_model, c.d_model, bias=c.bias)
        self.ln2 = norm()
        self.swiglu = c.ffn == "swiglu"
        self.up = nn.Linear(c.d_model, (2 if self.swiglu else 1) * c.d_ff, bias=c.bias)  # swiglu: w1 and w3 fused
        self.down = nn.Linear(c.d_ff, c.d_model, bias=c.bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(
            [self.n_heads * self.d_head, self.n_kv_heads * self.d_head, self.n_kv_heads * self.d_head], dim=-1)
        q = q.view(b, t, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(b, t, self.n_kv_heads, self.d_head).transpose(1, 2)
        v = v.view(b, t, self.n_kv_heads, self.d_head).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.up(self.ln2(x))
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        return x + self.down(h)


class ReferenceLM(nn.Module):
    """A decoder-only LM of `config`'s shape from stock PyTorch modules; `.loss(ids, targets)` is the plain CE."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        if c.position not in ("learned", "rope", "none"):
            raise ValueError(f"The reference model supports learned/rope/none positions, not {c.position!r}.")
        self.config = c
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.context_length, c.d_model) if c.position == "learned" else None
        self.blocks = nn.ModuleList(ReferenceBlock(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias) if c.norm == "layernorm" \
            else nn.RMSNorm(c.d_model, eps=c.norm_eps)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.head.weight = self.tok.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=c.init_std)

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of `targets (batch, seq)` given `ids (batch, seq)`."""
        seq = ids.shape[1]
        x = self.tok(ids)
        if self.pos is not None:
            x = x + self.pos(torch.arange(seq, device=ids.device))
        rope = rope_cos_sin(seq, self.config.d_head, self.config.rope_theta, ids.device) \
            if self.config.position == "rope" else None
        for block in self.blocks:
            x = block(x, rope)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def reference_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                        betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """`torch.optim.AdamW` (fused) decaying matrices only, like `llm_lit.optim.param_groups`."""
    decay = [p for p in model.parameters() if p.dim() >= 2 and p is not getattr(model, "tok").weight
             and (getattr(model, "pos", None) is None or p is not model.pos.weight)]
    decay_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
