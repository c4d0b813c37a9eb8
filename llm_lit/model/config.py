"""`ModelConfig`: every architecture switch of `TransformerLM` as one validated dataclass."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Optional

from llm_lit.errors import UserError

NormKind = Literal["rmsnorm", "layernorm"]
FfnKind = Literal["swiglu", "gelu", "relu2"]
PositionKind = Literal["rope", "alibi", "learned", "sinusoidal", "none"]
KernelsKind = Literal["reference", "torch"]
AttentionKind = Literal["reference", "fused"]
GeluApproximate = Literal["none", "tanh"]
ArchitectureKind = Literal["transformer", "bigram"]


class ModelConfigError(UserError, ValueError):
    """An invalid `ModelConfig`; the message lists every problem found, in one sentence."""


@dataclass
class ModelConfig:
    """Architecture of a GPT-style decoder-only transformer.

    Args:
        architecture: 'transformer' (everything below); 'bigram': a lookup table of next-token logits (vocab_size x vocab_size), the first rung of the classic ladder, which uses only vocab_size, context_length and init_std.
        vocab_size: Number of token ids the embedding and the output layer cover.
        context_length: Longest sequence the model attends over (also the size of the learned position table).
        d_model: Width of the residual stream.
        n_layers: Number of transformer blocks.
        n_heads: Number of query heads; d_model must be divisible by it.
        n_kv_heads: Number of key/value heads for grouped-query attention (default: n_heads); must divide n_heads.
        d_ff: Hidden width of the feed-forward layer (default: 8/3*d_model rounded up to a multiple of 64 for swiglu, 4*d_model for gelu and relu2).
        norm: Normalization layer: 'rmsnorm' or 'layernorm'.
        ffn: Feed-forward layer: 'swiglu' (w2(silu(w1 x) * w3 x)), 'gelu' (w2(gelu(w1 x))) or 'relu2' (w2(relu(w1 x)^2), ReLU squared).
        position: Position scheme: 'rope', 'alibi', 'learned', 'sinusoidal' or 'none'.
        rope_theta: Base of the RoPE angles (only used with position='rope').
        tie_embeddings: Share one matrix between the token embedding and the output layer.
        bias: Give every Linear and LayerNorm a bias.
        dropout: Dropout probability on embeddings, attention weights and residual branches (0 disables it).
        attention_dropout: Dropout probability on the attention weights alone (default: dropout). 0 keeps dropout on the embeddings and residual branches only; on a CPU that is much cheaper, since dropping attention weights makes torch's attention materialise them.
        kernels: 'reference' builds the from-scratch layers; 'torch' builds their torch-kernel versions (attention through torch's scaled_dot_product_attention, torch's norms, activations and cross-entropy, the output layer and loss as one function, chunked for large logits, and a sparse gradient for a tied embedding's lookup), each tested equal to the reference. The weights are the same either way.
        norm_eps: Epsilon added inside the normalization layers.
        init_std: Standard deviation of the normal init of Linear and Embedding weights (residual projections are further scaled by 1/sqrt(2*n_layers)).
        gelu_approximate: GELU of the 'gelu' feed-forward: 'none' is the exact erf form, 'tanh' the tanh approximation that GPT-2's released weights use (Hugging Face's 'gelu_new').
        qk_norm: QK-norm: RMSNorm each head's queries and keys (over d_head, one learned weight per norm shared by the heads) after the projections and before RoPE, so attention logits cannot grow without bound.
        zero_init_residual: Start the projections that write into the residual stream (attention's output_proj, the feed-forward's w2) at zero instead of N(0, init_std/sqrt(2*n_layers)), so every block starts as the identity.
        embedding_scale: Multiply the token embeddings by this before the first block: x0 = embedding_scale * E[ids] (+ positions). 1 leaves them alone; e.g. sqrt(d_model) with a tied table, as Gemma does.
        logit_scale: Multiply the logits by this: logits = logit_scale * (h W^T), for a tied or an untied head. 1 leaves them alone; e.g. 1/sqrt(d_model) for a tied head (the table's rows then serve as inputs at their own scale and as outputs scaled down), or muP's output multiplier.
        logit_softcap: Cap the logits smoothly at +-logit_softcap: logits = cap * tanh(logits / cap), after logit_scale (e.g. 30, as Gemma 2; 15 in modded-nanogpt). None disables it.
        attention: Deprecated, read from older configs and checkpoints: 'fused' means kernels='torch', 'reference' means kernels='reference'. Use kernels.
    """

    architecture: ArchitectureKind = "transformer"
    vocab_size: int = 8192
    context_length: int = 256
    d_model: int = 384
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: Optional[int] = None
    d_ff: Optional[int] = None
    norm: NormKind = "rmsnorm"
    ffn: FfnKind = "swiglu"
    position: PositionKind = "rope"
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    bias: bool = False
    dropout: float = 0.0
    attention_dropout: Optional[float] = None
    kernels: KernelsKind = "torch"
    norm_eps: float = 1e-5
    init_std: float = 0.02
    gelu_approximate: GeluApproximate = "none"
    qk_norm: bool = False
    zero_init_residual: bool = False
    embedding_scale: float = 1.0
    logit_scale: float = 1.0
    logit_softcap: Optional[float] = None
    attention: Optional[AttentionKind] = None

    def __post_init__(self) -> None:
        problems = _find_problems(self)
        if problems:
            raise ModelConfigError(
                "Invalid ModelConfig: " + "; ".join(problems) + "; fix these fields and try again."
            )
        if self.attention is not None:
            self.kernels = KERNELS_OF_ATTENTION[self.attention]
            # One line on stderr, once per process and setting (no source line: there is none to show).
            warnings.warn_explicit(f"ModelConfig: attention='{self.attention}' is deprecated and read as "
                                   f"kernels='{self.kernels}'; write kernels: {self.kernels} instead.",
                                   FutureWarning, "llm_lit", 0, registry=_DEPRECATIONS_SHOWN)
            self.attention = None
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_ff is None:
            self.d_ff = default_d_ff(self.d_model, self.ffn)

    @property
    def attention_dropout_p(self) -> float:
        """The attention weights' dropout probability: attention_dropout, or dropout when it is None."""
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def d_head(self) -> int:
        """Width of one attention head: d_model // n_heads."""
        return self.d_model // self.n_heads

    @classmethod
    def gpt2(cls, **overrides: Any) -> ModelConfig:
        """GPT-2 style: LayerNorm, GELU MLP, learned positions, tied embeddings, biases."""
        preset = dict(norm="layernorm", ffn="gelu", position="learned", tie_embeddings=True, bias=True)
        return cls(**{**preset, **overrides})

    @classmethod
    def llama(cls, **overrides: Any) -> ModelConfig:
        """Llama style: RMSNorm, SwiGLU, RoPE, untied embeddings, no biases."""
        preset = dict(norm="rmsnorm", ffn="swiglu", position="rope", tie_embeddings=False, bias=False)
        return cls(**{**preset, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain JSON-able dict (resolved defaults included; the deprecated `attention` left out)."""
        d = dataclasses.asdict(self)
        del d["attention"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build a config from `to_dict()` output; unknown keys raise `ModelConfigError`."""
        if not isinstance(d, dict):
            raise ModelConfigError(f"A model config must be a dict, got {type(d).__name__}; pass the output of ModelConfig.to_dict().")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"valid keys are {', '.join(valid)}."
                raise ModelConfigError(f"Unknown model config key '{key}'; {hint}")
        return cls(**d)


_DEPRECATIONS_SHOWN: dict = {}

#: How the deprecated `attention` setting maps onto `kernels`.
KERNELS_OF_ATTENTION = {"fused": "torch", "reference": "reference"}


def default_d_ff(d_model: int, ffn: str) -> int:
    """Default feed-forward width: ceil(8/3*d_model / 64)*64 for SwiGLU, 4*d_model for GELU and ReLU^2."""
    if ffn == "swiglu":
        return math.ceil(8 * d_model / 3 / 64) * 64
    return 4 * d_model


def field_choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """The allowed values of each `Literal`-typed field of dataclass `cls`, e.g. `{"norm": ("rmsnorm", "layernorm"), ...}`:
    the choices are written once, in the field's type, which jsonargparse also turns into `--help` and checks."""
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _find_problems(c: ModelConfig) -> list[str]:
    """Every problem with `c`, each as a short clause naming the field and the fix."""
    problems: list[str] = []
    for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
        value = getattr(c, name)
        if not _is_int(value) or value < 1:
            problems.append(f"{name} must be a positive integer (got {value!r})")
    for name in ("n_kv_heads", "d_ff"):
        value = getattr(c, name)
        if value is not None and (not _is_int(value) or value < 1):
            problems.append(f"{name} must be a positive integer or None (got {value!r})")
    choices = field_choices(type(c))
    if c.attention is not None:  # Optional[Literal], so not among the field choices
        choices["attention"] = tuple(KERNELS_OF_ATTENTION)
    for name, allowed in choices.items():
        if getattr(c, name) not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)} (got {getattr(c, name)!r})")
    for name in ("tie_embeddings", "bias", "qk_norm", "zero_init_residual"):
        if not isinstance(getattr(c, name), bool):
            problems.append(f"{name} must be true or false (got {getattr(c, name)!r})")
    if not _is_number(c.dropout) or not 0.0 <= c.dropout < 1.0:
        problems.append(f"dropout must be in [0, 1) (got {c.dropout!r})")
    if c.attention_dropout is not None and (not _is_number(c.attention_dropout)
                                            or not 0.0 <= c.attention_dropout < 1.0):
        problems.append(f"attention_dropout must be in [0, 1) or None (got {c.attention_dropout!r})")
    for name in ("rope_theta", "norm_eps", "init_std", "embedding_scale", "logit_scale"):
        value = getattr(c, name)
        if not _is_number(value) or not value > 0 or not math.isfinite(value):
            problems.append(f"{name} must be a positive number (got {value!r})")
    if c.logit_softcap is not None and not (_is_number(c.logit_softcap) and c.logit_softcap > 0
                                            and math.isfinite(c.logit_softcap)):
        problems.append(f"logit_softcap must be a positive number or None (got {c.logit_softcap!r})")
    heads_ok = _is_int(c.n_heads) and c.n_heads >= 1
    if heads_ok and _is_int(c.d_model) and c.d_model >= 1:
        if c.d_model % c.n_heads:
            problems.append(f"d_model ({c.d_model}) must be divisible by n_heads ({c.n_heads})")
        elif c.position == "rope" and (c.d_model // c.n_heads) % 2:
            problems.append(f"rope needs an even head size but d_model/n_heads is {c.d_model // c.n_heads}")
        if c.position == "sinusoidal" and c.d_model % 2:
            problems.append(f"sinusoidal positions need an even d_model (got {c.d_model})")
    if heads_ok and _is_int(c.n_kv_heads) and c.n_kv_heads >= 1 and c.n_heads % c.n_kv_heads:
        problems.append(f"n_kv_heads ({c.n_kv_heads}) must divide n_heads ({c.n_heads})")
    return problems
