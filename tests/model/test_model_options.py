"""The optional architecture switches (QK-norm, ReLU^2, zero-init of residual projections, embedding
and logit scales, logit soft-capping), each against a direct formula or PyTorch's own functions on
random inputs, equal under both kernel settings, and off by default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_lit.generation.sampling import SamplingConfig, generate
from llm_lit.model import ModelConfig, ModelConfigError, TransformerLM
from llm_lit.model.chunked_loss import chunked_linear_cross_entropy
from llm_lit.model.feedforward import ReluSquaredMLP
from llm_lit.model.functional import relu_squared, soft_cap

from model_helpers import TINY, assert_learns, random_ids as _ids
OPTIONS = {
    "qk_norm": dict(qk_norm=True),
    "relu2": dict(ffn="relu2"),
    "zero_init": dict(zero_init_residual=True),
    "scales-untied": dict(embedding_scale=4.0, logit_scale=0.25),
    "scales-tied": dict(embedding_scale=4.0, logit_scale=0.25, tie_embeddings=True),
    "softcap": dict(logit_softcap=1.5),
    "all": dict(qk_norm=True, ffn="relu2", zero_init_residual=True, embedding_scale=2.0, logit_scale=0.5,
                logit_softcap=3.0, tie_embeddings=True),
}


def _model(seed: int = 0, **overrides) -> TransformerLM:  # noqa: ANN003
    """A model whose every weight is random (norm weights around 1), so no option hides behind its init."""
    model = TransformerLM(ModelConfig(**{**TINY, **overrides}))
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.dim() == 1 else 0.0))
    return model


def test_every_option_is_off_by_default_and_validated() -> None:
    c = ModelConfig()
    assert (c.qk_norm, c.zero_init_residual, c.embedding_scale, c.logit_scale, c.logit_softcap) == (False, False, 1.0, 1.0, None)
    assert ModelConfig(ffn="relu2", d_model=64, n_heads=4).d_ff == 256
    old = ModelConfig.llama().to_dict()
    for name in ("qk_norm", "zero_init_residual", "embedding_scale", "logit_scale", "logit_softcap"):
        del old[name]  # a config or checkpoint written before the options existed
    assert ModelConfig.from_dict(old) == ModelConfig.llama()
    for kwargs, message in [
        (dict(qk_norm=1), r"qk_norm must be true or false"),
        (dict(zero_init_residual="yes"), r"zero_init_residual must be true or false"),
        (dict(embedding_scale=0.0), r"embedding_scale must be a positive number"),
        (dict(logit_scale=float("inf")), r"logit_scale must be a positive number"),
        (dict(logit_softcap=-30.0), r"logit_softcap must be a positive number or None \(got -30.0\)"),
        (dict(ffn="relu"), r"ffn must be one of swiglu, gelu, relu2"),
    ]:
        with pytest.raises(ModelConfigError, match=message):
            ModelConfig(**kwargs)


def test_defaults_leave_the_state_dict_unchanged() -> None:
    names = set(TransformerLM(ModelConfig(**TINY)).state_dict())
    for overrides in OPTIONS.values():
        extra = set(TransformerLM(ModelConfig(**TINY, **overrides)).state_dict()) - names
        assert extra <= {f"layers.{i}.attn.{n}_norm.weight" for i in range(2) for n in "qk"}
        assert bool(extra) == overrides.get("qk_norm", False)


@pytest.mark.parametrize("kernels", ["reference", "torch"])
@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_qk_norm_is_rmsnorm_of_each_head_before_rope(kernels: str, n_kv_heads: int) -> None:
    model = _model(qk_norm=True, n_kv_heads=n_kv_heads, kernels=kernels)
    attn = model.layers[0].attn
    assert attn.q_norm.weight.shape == attn.k_norm.weight.shape == (8,)
    x = torch.randn(2, 12, 32)
    rope = model.rope.cos_sin(torch.arange(12))

    def heads(t: torch.Tensor, n: int) -> torch.Tensor:
        return t.view(2, 12, n, 8).transpose(1, 2)

    q = F.rms_norm(heads(attn.q_proj(x), 4), (8,), attn.q_norm.weight, eps=1e-5)
    k = F.rms_norm(heads(attn.k_proj(x), n_kv_heads), (8,), attn.k_norm.weight, eps=1e-5)
    q, k = model.rope.rotate(q, *rope), model.rope.rotate(k, *rope)
    v = heads(attn.v_proj(x), n_kv_heads)
    groups = 4 // n_kv_heads
    out = F.scaled_dot_product_attention(q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), is_causal=True)
    expected = attn.output_proj(out.transpose(1, 2).reshape(2, 12, 32))
    torch.testing.assert_close(attn(x, rope), expected, atol=1e-5, rtol=1e-5)


def test_relu_squared_and_its_mlp_match_torch() -> None:
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    ours = relu_squared(x)
    theirs = F.relu(x) ** 2
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], 2 * F.relu(x.detach()))
    torch.manual_seed(0)
    mlp = ReluSquaredMLP(16, 64, bias=True, init_std=0.5)
    h = torch.randn(3, 5, 16)
    torch.testing.assert_close(mlp(h), F.linear(F.relu(F.linear(h, mlp.w1.weight, mlp.w1.bias)) ** 2,
                                                mlp.w2.weight, mlp.w2.bias))
    assert set(mlp.state_dict()) == {"w1.weight", "w1.bias", "w2.weight", "w2.bias"}


def test_zero_init_makes_every_block_start_as_the_identity() -> None:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**TINY, zero_init_residual=True, bias=True))
    for layer in model.layers:
        for proj in (layer.attn.output_proj, layer.ffn.w2):
            assert torch.count_nonzero(proj.weight) == 0 and torch.count_nonzero(proj.bias) == 0
        assert layer.attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.2)
    ids = _ids()
    torch.testing.assert_close(model.hidden_states(ids), model.ln_final(model.token_embeddings(ids)))
    model.loss(ids, ids.roll(1, 1)).backward()  # the zeros still learn: their gradients are not zero
    assert all(layer.ffn.w2.weight.grad.abs().sum() > 0 for layer in model.layers)
    torch.manual_seed(0)
    default = TransformerLM(ModelConfig(**TINY, bias=True))
    torch.testing.assert_close(default.layers[1].attn.q_proj.weight, model.layers[1].attn.q_proj.weight)  # same draws


@pytest.mark.parametrize("tied", [False, True])
def test_embedding_and_logit_scales(tied: bool) -> None:
    """x0 = embedding_scale * E[ids]; logits = logit_scale * h W^T. Against the same model without the
    scales whose table is multiplied by embedding_scale instead (tied, that table is W too)."""
    scaled = _model(embedding_scale=4.0, logit_scale=0.25, tie_embeddings=tied)
    plain = TransformerLM(ModelConfig(**TINY, tie_embeddings=tied))
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.token_embeddings.weight.mul_(4.0)
    ids = _ids()
    factor = 0.25 / 4.0 if tied else 0.25
    torch.testing.assert_close(scaled(ids), factor * plain(ids), atol=1e-5, rtol=1e-5)


def test_softcap_is_cap_times_tanh_of_the_logits() -> None:
    capped = _model(logit_softcap=1.5)
    free = TransformerLM(ModelConfig(**TINY))
    free.load_state_dict(capped.state_dict())
    ids = _ids()
    logits = capped(ids)
    assert logits.dtype == torch.float32 and logits.abs().max() < 1.5
    torch.testing.assert_close(logits, 1.5 * torch.tanh(free(ids) / 1.5), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(soft_cap(torch.tensor([0.0, 1e-3, 1e4]), 1.5), torch.tensor([0.0, 1e-3, 1.5]),
                               atol=1e-7, rtol=1e-6)


def test_chunked_loss_with_a_softcap_equals_torch_on_the_capped_logits() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(5, 11, 24, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(301, 24, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 301, (5, 11))
    targets[0, 0] = -100
    ours = chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens=8, softcap=2.5)
    logits = 2.5 * torch.tanh(hidden @ weight.T / 2.5)  # logits of std ~5: the cap bends them
    theirs = F.cross_entropy(logits.reshape(-1, 301), targets.reshape(-1))
    torch.testing.assert_close(ours, theirs.float())
    g_ours = torch.autograd.grad(ours * 3.0, (hidden, weight))
    g_theirs = torch.autograd.grad(theirs * 3.0, (hidden, weight))
    for a, b in zip(g_ours, g_theirs):  # the softmax and the cap run in float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("chunk", [5, 48])
def test_chunked_loss_equals_plain_with_each_option(name: str, chunk: int) -> None:
    model = _model(**OPTIONS[name])
    ids, targets = _ids(3, 16), _ids(3, 16, seed=7)
    targets[1, :5] = -100
    params = list(model.parameters())
    plain = model.loss(ids, targets, chunk_tokens=0)
    chunked = model.loss(ids, targets, chunk_tokens=chunk)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(torch.autograd.grad(chunked, params), torch.autograd.grad(plain, params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_torch_kernels_equal_reference_with_each_option(name: str) -> None:
    fast = _model(**OPTIONS[name], kernels="torch")
    reference = TransformerLM(ModelConfig(**TINY, **OPTIONS[name], kernels="reference"))
    reference.load_state_dict(fast.state_dict())
    ids = _ids()
    torch.testing.assert_close(fast(ids), reference(ids), atol=2e-5, rtol=1e-4)
    fast.loss(ids, ids.roll(1, 1)).backward()
    reference.loss(ids, ids.roll(1, 1)).backward()
    for (param, a), b in zip(fast.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=param)


@pytest.mark.parametrize("kernels", ["torch", "reference"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_generation_with_a_kv_cache_equals_recomputing(name: str, kernels: str) -> None:
    model = _model(**OPTIONS[name], kernels=kernels, n_kv_heads=2).eval()
    ids = _ids()
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache(2)
        pieces = [model(ids[:, :5], kv_cache=cache), model(ids[:, 5:6], kv_cache=cache), model(ids[:, 6:], kv_cache=cache)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=2e-5, rtol=1e-4)
    prompts = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]
    n = 20  # 5 + 20 > context 16: the window slides
    cached = generate(model, prompts, SamplingConfig(max_new_tokens=n, temperature=0))
    assert cached == generate(model, prompts, SamplingConfig(max_new_tokens=n, temperature=0, use_cache=False))
    assert len(set(cached[0]) | set(cached[1])) > 2  # varied tokens, not one repeated


@pytest.mark.parametrize("name", ["all", "softcap"])
def test_options_train(name: str) -> None:
    torch.manual_seed(0)
    assert_learns(TransformerLM(ModelConfig(**TINY, **OPTIONS[name])))
