"""Generation: sampling rules (`SamplingConfig`), KV-cache decoding (`generate`, `stream`).

May import: `errors`, `model`, `tokenizer`.
"""

from llm_lit.generation.sampling import SamplingConfig, SamplingConfigError, UnusableWeightsError, generate, stream

__all__ = ["SamplingConfig", "SamplingConfigError", "UnusableWeightsError", "generate", "stream"]
