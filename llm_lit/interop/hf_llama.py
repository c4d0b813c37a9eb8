"""The Hugging Face `LlamaForCausalLM` layout: config.json and weight names <-> ours.

Our RoPE rotates adjacent pairs `(x[2i], x[2i+1])`; Llama's `rotate_half` rotates
`(x[i], x[i + d_head/2])`, both at angle `pos * theta^(-2i/d_head)`. The two give the same
attention once the rows of `q_proj` and `k_proj` are reordered inside every head: Llama's
row `i` is our row `2i` and its row `i + d_head/2` is our row `2i + 1`. (Scores are dot
products of q and k, so any reordering applied to both leaves them unchanged.) `v_proj` and
`output_proj` are not rotated and need no reordering.

    ours                          Llama
    token_embeddings              model.embed_tokens
    layers.{i}.ln1                model.layers.{i}.input_layernorm
    layers.{i}.attn.q/k/v_proj    model.layers.{i}.self_attn.q/k/v_proj   (q, k rows permuted)
    layers.{i}.attn.output_proj   model.layers.{i}.self_attn.o_proj
    layers.{i}.ln2                model.layers.{i}.post_attention_layernorm
    layers.{i}.ffn.w1 / w3 / w2   model.layers.{i}.mlp.gate_proj / up_proj / down_proj
    ln_final                      model.norm
    lm_head                       lm_head        (left out of the file when tied)
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig

ARCHITECTURE = "LlamaForCausalLM"

#: LlamaConfig's defaults for the keys we read, used when a config.json leaves them out.
DEFAULTS = {"rms_norm_eps": 1e-6, "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
            "hidden_act": "silu", "max_position_embeddings": 2048, "attention_dropout": 0.0}


def adjacent_to_half(weight: Tensor, n_heads: int) -> Tensor:
    """Reorder the rows of a q/k projection from our pair layout to Llama's half-split layout.

    Shapes: `(n_heads * d_head, ...)` -> same; works for weights `(out, in)` and biases `(out,)`.
    """
    rest = weight.shape[1:]
    d_head = weight.shape[0] // n_heads
    return weight.reshape(n_heads, d_head // 2, 2, *rest).transpose(1, 2).reshape(weight.shape).contiguous()


def half_to_adjacent(weight: Tensor, n_heads: int) -> Tensor:
    """Inverse of `adjacent_to_half`: Llama's half-split rows back to our adjacent pairs."""
    rest = weight.shape[1:]
    d_head = weight.shape[0] // n_heads
    return weight.reshape(n_heads, 2, d_head // 2, *rest).transpose(1, 2).reshape(weight.shape).contiguous()


def _names(i: int) -> list[tuple[str, str]]:
    """(our name, Llama name) pairs of block `i`'s weights, without the `.weight`/`.bias` suffix."""
    ours, theirs = f"layers.{i}.", f"model.layers.{i}."
    return [
        (ours + "ln1", theirs + "input_layernorm"),
        (ours + "attn.q_proj", theirs + "self_attn.q_proj"),
        (ours + "attn.k_proj", theirs + "self_attn.k_proj"),
        (ours + "attn.v_proj", theirs + "self_attn.v_proj"),
        (ours + "attn.output_proj", theirs + "self_attn.o_proj"),
        (ours + "ln2", theirs + "post_attention_layernorm"),
        (ours + "ffn.w1", theirs + "mlp.gate_proj"),
        (ours + "ffn.w3", theirs + "mlp.up_proj"),
        (ours + "ffn.w2", theirs + "mlp.down_proj"),
    ]


def _name_map(config: ModelConfig) -> dict[str, str]:
    """Our full state-dict name -> Llama's, for every tensor the Llama file holds."""
    names = {"token_embeddings.weight": "model.embed_tokens.weight", "ln_final.weight": "model.norm.weight"}
    if not config.tie_embeddings:
        names["lm_head.weight"] = "lm_head.weight"
    for i in range(config.n_layers):
        for ours, theirs in _names(i):
            names[ours + ".weight"] = theirs + ".weight"
            if config.bias and not ours.endswith(("ln1", "ln2")):
                names[ours + ".bias"] = theirs + ".bias"
    return names


def _rope_heads(name: str, config: ModelConfig) -> int | None:
    """How many heads a tensor's rows split into if it needs the RoPE reordering, else None."""
    if ".attn.q_proj." in name:
        return config.n_heads
    if ".attn.k_proj." in name:
        return config.n_kv_heads
    return None


def to_hf_state_dict(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our `TransformerLM` state dict -> `LlamaForCausalLM` tensors (q/k rows reordered, tied head left out)."""
    out = {}
    for ours, theirs in _name_map(config).items():
        t = state_dict[ours].detach()
        heads = _rope_heads(ours, config)
        out[theirs] = adjacent_to_half(t, heads) if heads else t
    return out


def from_hf_state_dict(tensors: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """`LlamaForCausalLM` tensors -> our state dict (missing/unexpected names raise `UserError`)."""
    names = _name_map(config)
    ignored = {k for k in tensors if k.endswith("rotary_emb.inv_freq")}
    if config.tie_embeddings:
        ignored.add("lm_head.weight")  # some files store the tied head anyway
    check_names(set(names.values()), set(tensors) - ignored, "LlamaForCausalLM")
    out = {}
    for ours, theirs in names.items():
        heads = _rope_heads(ours, config)
        out[ours] = half_to_adjacent(tensors[theirs], heads) if heads else tensors[theirs]
    if config.tie_embeddings:
        out["lm_head.weight"] = out["token_embeddings.weight"]
    return out


def check_names(expected: set[str], found: set[str], architecture: str) -> None:
    """Raise `UserError` naming the first missing or unexpected tensor of a Hugging Face weight file."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing:
        raise UserError(
            f"The {architecture} weights lack {len(missing)} tensor(s) its config.json implies (e.g. '{missing[0]}'); "
            "pass the folder's complete weights and the config.json saved with them."
        )
    if unexpected:
        raise UserError(
            f"The {architecture} weights have {len(unexpected)} tensor(s) llm_lit's model has no place for "
            f"(e.g. '{unexpected[0]}'); the checkpoint uses an architecture variant llm_lit does not support."
        )


# ---------------------------------------------------------------------------------------- config


def to_hf_config(config: ModelConfig, bos_eos_id: int | None) -> dict[str, Any]:
    """The `config.json` of a `LlamaForCausalLM` equal to our model (the caller has checked it maps)."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.d_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        # transformers < 5 reads rope_theta, >= 5 reads rope_parameters; both are written.
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rope_scaling": None,
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": config.attention_dropout_p,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "bos_token_id": bos_eos_id,
        "eos_token_id": bos_eos_id,
        "pad_token_id": None,
        "pretraining_tp": 1,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def from_hf_config(hf: dict[str, Any], where: str) -> ModelConfig:
    """Our `ModelConfig` for a Llama `config.json` dict; `UserError` for features we do not implement."""
    get = lambda key: hf[key] if hf.get(key) is not None else DEFAULTS.get(key)  # noqa: E731
    if get("hidden_act") != "silu":
        raise UserError(f"{where} uses hidden_act={get('hidden_act')!r} but llm_lit's SwiGLU uses silu; only silu Llama models can be imported.")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else rope
    if rope_type not in (None, "default"):
        raise UserError(f"{where} uses RoPE scaling of type {rope_type!r}, which llm_lit's RoPE does not implement; only plain RoPE Llama models can be imported.")
    theta = (rope.get("rope_theta") if isinstance(rope, dict) else None) or hf.get("rope_theta") or 10000.0
    if bool(get("attention_bias")) != bool(get("mlp_bias")):
        raise UserError(f"{where} has attention_bias={get('attention_bias')} but mlp_bias={get('mlp_bias')}; llm_lit has one bias switch for both, so only models with equal settings can be imported.")
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d_model // n_heads) or d_model % n_heads:
        raise UserError(f"{where} has head_dim={hf.get('head_dim')} but hidden_size/num_attention_heads is {d_model / n_heads:g}; llm_lit needs head_dim = hidden_size / num_attention_heads.")
    return ModelConfig(
        vocab_size=hf["vocab_size"], context_length=get("max_position_embeddings"), d_model=d_model,
        n_layers=hf["num_hidden_layers"], n_heads=n_heads, n_kv_heads=hf.get("num_key_value_heads") or n_heads,
        d_ff=hf["intermediate_size"], norm="rmsnorm", ffn="swiglu", position="rope", rope_theta=float(theta),
        tie_embeddings=bool(get("tie_word_embeddings")), bias=bool(get("attention_bias")),
        dropout=float(get("attention_dropout")), norm_eps=float(get("rms_norm_eps")),
        init_std=float(hf.get("initializer_range") or 0.02),
    )
