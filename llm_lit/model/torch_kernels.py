"""Fast paths: the model's layers with their math handed to torch's own kernels.

Each class is its from-scratch parent with one method replaced by a call into torch (fused
C++/CUDA kernels; flash or memory-efficient attention on a GPU). Parameters and state-dict
names are the parent's, so weights move freely between the two. `factories.py` picks these
classes once, when the model is built with `ModelConfig.kernels='torch'`; tests/model prove
each equal to its parent on random inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llm_lit.model.attention import CausalSelfAttention
from llm_lit.model.feedforward import GeluMLP, SwiGLU
from llm_lit.model.layers import LayerNorm, RMSNorm

# `enable_gqa` arrived in torch 2.5; on older torch the kv heads are repeated by hand.
_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


class TorchRMSNorm(RMSNorm):
    """`RMSNorm` through `torch.nn.functional.rms_norm` (still float32 inside, the input's dtype out)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (self.dim,), self.weight, self.eps)
        return F.rms_norm(x.float(), (self.dim,), self.weight.float(), self.eps).to(x.dtype)


class TorchLayerNorm(LayerNorm):
    """`LayerNorm` through `torch.nn.functional.layer_norm`."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)


class TorchSwiGLU(SwiGLU):
    """`SwiGLU` with `torch.nn.functional.silu`."""

    def activation(self, x: Tensor) -> Tensor:
        return F.silu(x)


class TorchGeluMLP(GeluMLP):
    """`GeluMLP` with `torch.nn.functional.gelu` (exact or tanh, as configured)."""

    def activation(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)


class TorchSDPAttention(CausalSelfAttention):
    """`CausalSelfAttention` whose `attend` is `torch.nn.functional.scaled_dot_product_attention`."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool,
               dropout_p: float) -> Tensor:
        if self.n_kv_heads == self.n_heads:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
        if _SDPA_HAS_GQA:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                  is_causal=is_causal, enable_gqa=True)
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
