"""Which class builds each layer: chosen once, when the model is built, from the `ModelConfig`.

`kernels='reference'` builds the from-scratch classes; `kernels='torch'` builds their
torch-kernel subclasses from `torch_kernels.py` (and `TorchLMHead` from `head.py`), which hold
the same parameters under the same names. No layer tests a kernel setting in `forward`.
"""

from __future__ import annotations

import math

from torch import nn

from llm_lit.model.attention import CausalSelfAttention
from llm_lit.model.config import ModelConfig
from llm_lit.model.feedforward import GeluMLP, ReluSquaredMLP, SwiGLU
from llm_lit.model.head import LMHead, TorchLMHead
from llm_lit.model.layers import Embedding, LayerNorm, RMSNorm
from llm_lit.model.torch_kernels import TorchGeluMLP, TorchLayerNorm, TorchRMSNorm, TorchSDPAttention, TorchSwiGLU


def _torch(config: ModelConfig) -> bool:
    return config.kernels == "torch"


def residual_init_std(config: ModelConfig) -> float:
    """Init std of the projections that write into the residual stream (attention's output_proj,
    the feed-forward's w2): GPT-2's `init_std / sqrt(2 n_layers)`, so the stream's variance does
    not grow with depth; 0 (zeros, every block starts as the identity) with `zero_init_residual`."""
    return 0.0 if config.zero_init_residual else config.init_std / math.sqrt(2 * config.n_layers)


def make_norm(config: ModelConfig) -> RMSNorm | LayerNorm:
    """The block and final normalization: `(..., d_model) -> (..., d_model)`."""
    if config.norm == "rmsnorm":
        return (TorchRMSNorm if _torch(config) else RMSNorm)(config.d_model, eps=config.norm_eps)
    return (TorchLayerNorm if _torch(config) else LayerNorm)(config.d_model, eps=config.norm_eps, bias=config.bias)


def make_qk_norm(config: ModelConfig) -> RMSNorm:
    """QK-norm: an RMSNorm over one head's `d_head` features, `(..., d_head) -> (..., d_head)`."""
    return (TorchRMSNorm if _torch(config) else RMSNorm)(config.d_head, eps=config.norm_eps)


def make_attention(config: ModelConfig) -> CausalSelfAttention:
    """Causal self-attention: the from-scratch softmax or torch's scaled_dot_product_attention."""
    attention = TorchSDPAttention if _torch(config) else CausalSelfAttention
    qk_norms = dict(q_norm=make_qk_norm(config), k_norm=make_qk_norm(config)) if config.qk_norm else {}
    return attention(config.d_model, config.n_heads, config.n_kv_heads, bias=config.bias, dropout=config.attention_dropout_p,
                     init_std=config.init_std, output_init_std=residual_init_std(config), **qk_norms)


def make_ffn(config: ModelConfig) -> nn.Module:
    """The feed-forward layer: `(..., d_model) -> (..., d_model)`."""
    options = dict(bias=config.bias, init_std=config.init_std, output_init_std=residual_init_std(config))
    if config.ffn == "swiglu":
        return (TorchSwiGLU if _torch(config) else SwiGLU)(config.d_model, config.d_ff, **options)
    if config.ffn == "relu2":
        return ReluSquaredMLP(config.d_model, config.d_ff, **options)  # no torch kernel does better
    return (TorchGeluMLP if _torch(config) else GeluMLP)(config.d_model, config.d_ff,
                                                          approximate=config.gelu_approximate, **options)


def make_head(config: ModelConfig, token_embeddings: Embedding) -> LMHead:
    """The output layer and loss, sharing `token_embeddings`' table when `tie_embeddings`."""
    head = TorchLMHead if _torch(config) else LMHead
    return head(config.d_model, config.vocab_size, init_std=config.init_std,
                tied_to=token_embeddings if config.tie_embeddings else None,
                logit_scale=config.logit_scale, softcap=config.logit_softcap)
