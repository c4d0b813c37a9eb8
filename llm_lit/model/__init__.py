"""The from-scratch transformer family: config, layers, attention, head, `TransformerLM`.

The torch-kernel versions of the layers are in `torch_kernels.py`; `factories.py` picks one
or the other when the model is built (`ModelConfig.kernels`).
"""

from llm_lit.model.attention import CausalSelfAttention, KVCache, causal_mask, scaled_dot_product_attention
from llm_lit.model.bigram import BigramLM, bigram_entropy
from llm_lit.model.config import ModelConfig, ModelConfigError
from llm_lit.model.feedforward import GeluMLP, ReluSquaredMLP, SwiGLU
from llm_lit.model.functional import cross_entropy, gelu, log_softmax, relu_squared, silu, soft_cap, softmax
from llm_lit.model.head import LMHead, TorchLMHead, sparse_lookup
from llm_lit.model.layers import Embedding, LayerNorm, Linear, RMSNorm
from llm_lit.model.positional import RotaryEmbedding, SinusoidalPositions, alibi_bias, alibi_slopes
from llm_lit.model.torch_kernels import TorchGeluMLP, TorchLayerNorm, TorchRMSNorm, TorchSDPAttention, TorchSwiGLU
from llm_lit.model.transformer import Block, TransformerLM


def build_model(config: ModelConfig) -> TransformerLM | BigramLM:
    """The language model `config.architecture` names: a `TransformerLM` or a `BigramLM`."""
    return BigramLM(config) if config.architecture == "bigram" else TransformerLM(config)


__all__ = [
    "BigramLM", "Block", "bigram_entropy", "build_model", "CausalSelfAttention", "Embedding", "GeluMLP", "KVCache", "LMHead", "LayerNorm", "Linear", "ModelConfig",
    "ModelConfigError", "RMSNorm", "ReluSquaredMLP", "RotaryEmbedding", "SinusoidalPositions", "SwiGLU", "TorchGeluMLP",
    "TorchLMHead", "TorchLayerNorm", "TorchRMSNorm", "TorchSDPAttention", "TorchSwiGLU", "TransformerLM",
    "alibi_bias", "alibi_slopes", "causal_mask", "cross_entropy", "gelu", "log_softmax", "relu_squared",
    "scaled_dot_product_attention", "silu", "soft_cap", "softmax", "sparse_lookup",
]
