"""ModelConfig: defaults, presets, validation messages, dict round trip, --help docs."""

from __future__ import annotations

import pytest

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, ModelConfigError


def test_defaults_resolve() -> None:
    c = ModelConfig()
    assert (c.vocab_size, c.context_length, c.d_model, c.n_layers, c.n_heads) == (8192, 256, 384, 6, 6)
    assert c.n_kv_heads == 6
    assert c.d_ff == 1024  # ceil(8/3 * 384 / 64) * 64
    assert ModelConfig(d_model=100, n_heads=5).d_ff == 320  # 266.7 rounded up to a multiple of 64
    assert ModelConfig(ffn="gelu").d_ff == 4 * 384
    assert ModelConfig(d_ff=77).d_ff == 77
    assert c.d_head == 64


def test_presets() -> None:
    g = ModelConfig.gpt2(d_model=64, n_heads=4)
    assert (g.norm, g.ffn, g.position, g.tie_embeddings, g.bias) == ("layernorm", "gelu", "learned", True, True)
    assert g.d_model == 64 and g.d_ff == 256
    l = ModelConfig.llama(n_kv_heads=2)
    assert (l.norm, l.ffn, l.position, l.tie_embeddings, l.bias) == ("rmsnorm", "swiglu", "rope", False, False)
    assert l.n_kv_heads == 2
    assert ModelConfig.gpt2(bias=False).bias is False  # overrides win over the preset


def test_dict_round_trip() -> None:
    c = ModelConfig.gpt2(n_kv_heads=3, dropout=0.1)
    d = c.to_dict()
    assert d["n_kv_heads"] == 3 and d["norm"] == "layernorm"
    assert ModelConfig.from_dict(d) == c


def test_from_dict_names_the_nearest_key() -> None:
    with pytest.raises(ModelConfigError, match="Unknown model config key 'n_layer'; did you mean 'n_layers'"):
        ModelConfig.from_dict({"n_layer": 4})
    with pytest.raises(ModelConfigError, match="valid keys are"):
        ModelConfig.from_dict({"zzzzzz": 4})
    with pytest.raises(ModelConfigError, match="must be a dict"):
        ModelConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(vocab_size=0), r"vocab_size must be a positive integer \(got 0\)"),
        (dict(context_length=-1), r"context_length must be a positive integer"),
        (dict(d_model=2.5), r"d_model must be a positive integer"),
        (dict(n_layers=True), r"n_layers must be a positive integer"),
        (dict(n_heads=0), r"n_heads must be a positive integer"),
        (dict(n_kv_heads=0), r"n_kv_heads must be a positive integer or None"),
        (dict(d_ff=-5), r"d_ff must be a positive integer or None"),
        (dict(norm="batchnorm"), r"norm must be one of rmsnorm, layernorm \(got 'batchnorm'\)"),
        (dict(ffn="relu"), r"ffn must be one of swiglu, gelu"),
        (dict(position="xpos"), r"position must be one of rope, alibi, learned, sinusoidal, none"),
        (dict(kernels="flash"), r"kernels must be one of reference, torch"),
        (dict(attention="flash"), r"attention must be one of fused, reference"),
        (dict(tie_embeddings="yes"), r"tie_embeddings must be true or false"),
        (dict(bias=1), r"bias must be true or false"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(rope_theta=0), r"rope_theta must be a positive number"),
        (dict(norm_eps=-1e-5), r"norm_eps must be a positive number"),
        (dict(init_std=float("nan")), r"init_std must be a positive number"),
        (dict(d_model=100, n_heads=6), r"d_model \(100\) must be divisible by n_heads \(6\)"),
        (dict(n_heads=6, n_kv_heads=4), r"n_kv_heads \(4\) must divide n_heads \(6\)"),
        (dict(d_model=30, n_heads=6), r"rope needs an even head size but d_model/n_heads is 5"),
        (dict(d_model=33, n_heads=3, position="sinusoidal"), r"sinusoidal positions need an even d_model"),
    ],
)
def test_every_invalid_field_has_its_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message) as info:
        ModelConfig(**kwargs)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("Invalid ModelConfig: ")
    assert str(info.value).endswith("fix these fields and try again.")


def test_every_problem_is_collected_into_one_message() -> None:
    with pytest.raises(ModelConfigError) as info:
        ModelConfig(vocab_size=0, norm="batchnorm", dropout=2.0, d_model=100)
    text = str(info.value)
    for fragment in ("vocab_size", "norm must be", "dropout", "d_model (100) must be divisible"):
        assert fragment in text
    assert text.count("\n") == 0


def test_field_docs_show_in_jsonargparse_help() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ModelConfig, "model")
    help_text = " ".join(parser.format_help().split())
    for doc in ("Width of the residual stream.", "grouped-query attention", "'rope', 'alibi', 'learned'",
                "Share one matrix between the token embedding", "scaled_dot_product_attention",
                "'reference' builds the from-scratch layers; 'torch' builds their torch-kernel versions",
                "QK-norm: RMSNorm each head's queries and keys", "'relu2' (w2(relu(w1 x)^2), ReLU squared)",
                "Start the projections that write into the residual stream", "x0 = embedding_scale * E[ids]",
                "logits = logit_scale * (h W^T)", "logits = cap * tanh(logits / cap)", "Deprecated"):
        assert doc in help_text
    parsed = parser.parse_args(["--model.d_model=64", "--model.n_heads=4", "--model.position=alibi"])
    assert parsed.model.position == "alibi"


def test_the_choices_checked_are_the_field_types():
    """Each choice list is written once, in the field's Literal type (what --help shows); the check reads it."""
    from llm_lit.model.config import field_choices

    choices = field_choices(ModelConfig)
    assert choices["norm"] == ("rmsnorm", "layernorm") and choices["gelu_approximate"] == ("none", "tanh")
    for name, allowed in choices.items():
        with pytest.raises(ModelConfigError, match=f"{name} must be one of {', '.join(allowed)}"):
            ModelConfig(**{name: "nonsense"})


def test_deprecated_attention_setting_reads_as_kernels() -> None:
    old = ModelConfig.gpt2().to_dict()
    assert "attention" not in old and old["kernels"] == "torch"
    del old["kernels"]
    for attention, kernels in (("fused", "torch"), ("reference", "reference")):
        with pytest.warns(FutureWarning, match=f"attention='{attention}' is deprecated and read as kernels='{kernels}'"):
            config = ModelConfig.from_dict({**old, "attention": attention})  # a config or checkpoint of before
        assert config.kernels == kernels and config.attention is None
        assert config == ModelConfig.gpt2(kernels=kernels)
