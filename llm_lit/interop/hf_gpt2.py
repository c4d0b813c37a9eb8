"""The Hugging Face `GPT2LMHeadModel` layout: config.json and weight names <-> ours.

GPT-2's linear layers are `Conv1D` modules whose weight is stored `(in, out)`, the transpose
of our `(out, in)`; and its attention has one fused `c_attn` projecting to q, k and v side
by side (`(d_model, 3 * d_model)`), which we split into `q_proj`, `k_proj`, `v_proj`.

    ours                               GPT-2
    token_embeddings                   transformer.wte
    position_embeddings                transformer.wpe
    layers.{i}.ln1 / ln2               transformer.h.{i}.ln_1 / ln_2
    layers.{i}.attn.q/k/v_proj         transformer.h.{i}.attn.c_attn     (concatenated, transposed)
    layers.{i}.attn.output_proj        transformer.h.{i}.attn.c_proj     (transposed)
    layers.{i}.ffn.w1 / w2             transformer.h.{i}.mlp.c_fc / c_proj (transposed)
    ln_final                           transformer.ln_f
    lm_head                            lm_head     (left out of the file when tied)

Released GPT-2 files name the same tensors without the `transformer.` prefix and carry the
attention mask buffers `attn.bias` / `attn.masked_bias`; both are accepted on import.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.interop.hf_llama import check_names
from llm_lit.model import ModelConfig

ARCHITECTURE = "GPT2LMHeadModel"

#: GPT2Config's defaults for the keys we read, used when a config.json leaves them out.
DEFAULTS = {"n_positions": 1024, "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True, "resid_pdrop": 0.1, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}

#: GPT-2 activation names that are exactly our GELU (the erf form).
EXACT_GELU = ("gelu",)
#: GPT-2 activation names that are the tanh approximation of GELU.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def activation_name(config: ModelConfig) -> str:
    """GPT-2's `activation_function` for our GELU: 'gelu' (exact) or 'gelu_new' (tanh approximation)."""
    return "gelu_new" if config.gelu_approximate == "tanh" else "gelu"


def to_hf_state_dict(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our `TransformerLM` state dict -> `GPT2LMHeadModel` tensors (Conv1D layout, fused c_attn)."""
    sd = {k: v.detach() for k, v in state_dict.items()}
    out = {"transformer.wte.weight": sd["token_embeddings.weight"],
           "transformer.wpe.weight": sd["position_embeddings.weight"],
           "transformer.ln_f.weight": sd["ln_final.weight"], "transformer.ln_f.bias": sd["ln_final.bias"]}
    if not config.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(config.n_layers):
        p, h = f"layers.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[h + theirs + ".weight"] = sd[p + ours + ".weight"]
            out[h + theirs + ".bias"] = sd[p + ours + ".bias"]
        qkv = [p + f"attn.{n}_proj" for n in "qkv"]
        out[h + "attn.c_attn.weight"] = torch.cat([sd[n + ".weight"] for n in qkv]).T.contiguous()
        out[h + "attn.c_attn.bias"] = torch.cat([sd[n + ".bias"] for n in qkv])
        for ours, theirs in (("attn.output_proj", "attn.c_proj"), ("ffn.w1", "mlp.c_fc"), ("ffn.w2", "mlp.c_proj")):
            out[h + theirs + ".weight"] = sd[p + ours + ".weight"].T.contiguous()
            out[h + theirs + ".bias"] = sd[p + ours + ".bias"]
    return out


def from_hf_state_dict(tensors: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """`GPT2LMHeadModel` (or bare `GPT2Model`) tensors -> our state dict; `UserError` for missing/extra names."""
    tensors = _canonical_names(tensors)
    expected = set(to_hf_state_dict(_shapes_only(config), config))
    ignored = {k for k in tensors if k.endswith((".attn.bias", ".attn.masked_bias"))}
    if config.tie_embeddings:
        ignored.add("lm_head.weight")
    check_names(expected, set(tensors) - ignored, ARCHITECTURE)
    t = tensors
    out = {"token_embeddings.weight": t["transformer.wte.weight"],
           "position_embeddings.weight": t["transformer.wpe.weight"],
           "ln_final.weight": t["transformer.ln_f.weight"], "ln_final.bias": t["transformer.ln_f.bias"]}
    out["lm_head.weight"] = out["token_embeddings.weight"] if config.tie_embeddings else t["lm_head.weight"]
    d = config.d_model
    for i in range(config.n_layers):
        p, h = f"layers.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[p + ours + ".weight"] = t[h + theirs + ".weight"]
            out[p + ours + ".bias"] = t[h + theirs + ".bias"]
        weight, bias = t[h + "attn.c_attn.weight"], t[h + "attn.c_attn.bias"]
        for j, name in enumerate("qkv"):
            out[p + f"attn.{name}_proj.weight"] = weight[:, j * d:(j + 1) * d].T.contiguous()
            out[p + f"attn.{name}_proj.bias"] = bias[j * d:(j + 1) * d]
        for ours, theirs in (("attn.output_proj", "attn.c_proj"), ("ffn.w1", "mlp.c_fc"), ("ffn.w2", "mlp.c_proj")):
            out[p + ours + ".weight"] = t[h + theirs + ".weight"].T.contiguous()
            out[p + ours + ".bias"] = t[h + theirs + ".bias"]
    return out


def _canonical_names(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Add the `transformer.` prefix that bare `GPT2Model` files (e.g. the released GPT-2) leave out."""
    if any(k.startswith("transformer.") for k in tensors):
        return tensors
    return {k if k == "lm_head.weight" else "transformer." + k: v for k, v in tensors.items()}


def _shapes_only(config: ModelConfig) -> dict[str, Tensor]:
    """A stand-in state dict with our names (empty tensors on the meta device) to derive GPT-2's names."""
    from llm_lit.model import TransformerLM

    with torch.device("meta"):
        return TransformerLM(config).state_dict()


# ---------------------------------------------------------------------------------------- config


def to_hf_config(config: ModelConfig, bos_eos_id: int | None) -> dict[str, Any]:
    """The `config.json` of a `GPT2LMHeadModel` equal to our model (the caller has checked it maps)."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff,
        "activation_function": activation_name(config),
        "layer_norm_epsilon": config.norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attention_dropout_p,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "bos_token_id": bos_eos_id,
        "eos_token_id": bos_eos_id,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def from_hf_config(hf: dict[str, Any], where: str) -> ModelConfig:
    """Our `ModelConfig` for a GPT-2 `config.json` dict; `UserError` for features we do not implement."""
    get = lambda key: hf[key] if hf.get(key) is not None else DEFAULTS.get(key)  # noqa: E731
    activation = get("activation_function")
    if activation not in EXACT_GELU + TANH_GELU:
        raise UserError(f"{where} uses activation_function={activation!r}, which llm_lit's GELU MLP does not implement; only 'gelu' and 'gelu_new' GPT-2 models can be imported.")
    if not get("scale_attn_weights") or get("scale_attn_by_inverse_layer_idx"):
        raise UserError(f"{where} scales attention other than by 1/sqrt(head size) (scale_attn_weights / scale_attn_by_inverse_layer_idx); only standard GPT-2 attention can be imported.")
    if get("add_cross_attention"):
        raise UserError(f"{where} has cross-attention layers, which a decoder-only llm_lit model lacks; only plain GPT-2 models can be imported.")
    return ModelConfig(
        vocab_size=hf["vocab_size"], context_length=get("n_positions"), d_model=hf["n_embd"],
        n_layers=hf["n_layer"], n_heads=hf["n_head"], d_ff=get("n_inner") or 4 * hf["n_embd"], norm="layernorm",
        ffn="gelu", position="learned", tie_embeddings=bool(get("tie_word_embeddings")), bias=True,
        dropout=float(get("resid_pdrop")), norm_eps=float(get("layer_norm_epsilon")),
        init_std=float(hf.get("initializer_range") or 0.02),
        gelu_approximate="tanh" if activation in TANH_GELU else "none",
    )
