"""The from-scratch transformer family: config, layers, attention, `TransformerLM`."""

from llm_lit.model.attention import CausalSelfAttention, KVCache, causal_mask, scaled_dot_product_attention
from llm_lit.model.config import ModelConfig, ModelConfigError
from llm_lit.model.feedforward import GeluMLP, SwiGLU
from llm_lit.model.functional import cross_entropy, gelu, log_softmax, silu, softmax
from llm_lit.model.layers import Embedding, LayerNorm, Linear, RMSNorm
from llm_lit.model.positional import RotaryEmbedding, SinusoidalPositions, alibi_bias, alibi_slopes
from llm_lit.model.transformer import Block, TransformerLM

__all__ = [
    "Block", "CausalSelfAttention", "Embedding", "GeluMLP", "KVCache", "LayerNorm", "Linear", "ModelConfig",
    "ModelConfigError", "RMSNorm", "RotaryEmbedding", "SinusoidalPositions", "SwiGLU", "TransformerLM",
    "alibi_bias", "alibi_slopes", "causal_mask", "cross_entropy", "gelu", "log_softmax",
    "scaled_dot_product_attention", "silu", "softmax",
]
