"""Shared helpers of the interop tests: tiny exportable configs and random models."""

from __future__ import annotations

from pathlib import Path

import torch

from llm_lit.model import ModelConfig, TransformerLM

CORPUS = Path(__file__).resolve().parents[2] / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt"
EOT = "<|endoftext|>"
VOCAB = 400
TINY = dict(vocab_size=VOCAB, context_length=48, d_model=64, n_layers=2, n_heads=4)

#: Every config that exports, by name: (preset, overrides).
EXPORTABLE = {
    "llama": ("llama", {}),
    "llama-gqa-bias": ("llama", {"n_kv_heads": 2, "bias": True, "rope_theta": 500.0, "norm_eps": 1e-6}),
    "llama-tied": ("llama", {"tie_embeddings": True, "d_ff": 96}),
    "gpt2": ("gpt2", {}),
    "gpt2-untied": ("gpt2", {"tie_embeddings": False, "d_ff": 80, "norm_eps": 1e-6}),
    "gpt2-tanh-gelu": ("gpt2", {"gelu_approximate": "tanh"}),  # released GPT-2's 'gelu_new'
}


def make_config(name: str, **extra) -> ModelConfig:  # noqa: ANN003
    preset, overrides = EXPORTABLE[name]
    return getattr(ModelConfig, preset)(**{**TINY, **overrides, **extra})


def random_model(config: ModelConfig, seed: int = 0) -> TransformerLM:
    """A model whose every weight (norms and biases included) is random and large enough to give varied logits.

    Norm weights are drawn around 1 and biases around 0 (biases around 1 made random GPT-2s repeat one
    token); the seed is set after building, so the weights do not depend on how the init draws numbers.
    """
    model = TransformerLM(config).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm_weight = p.dim() == 1 and name.endswith("weight")
            p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 0.15) + (1.0 if norm_weight else 0.0))
    return model
