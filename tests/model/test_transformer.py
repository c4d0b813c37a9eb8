"""TransformerLM: names, init, torch kernels == reference, KV cache, presets train, counts, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM, head

POSITIONS = ["rope", "alibi", "learned", "sinusoidal", "none"]
from model_helpers import TINY, assert_learns, random_ids as _ids


def _pair(**overrides) -> tuple[TransformerLM, TransformerLM]:  # noqa: ANN003
    """A torch-kernels model and a reference model with the same weights."""
    torch.manual_seed(0)
    fast = TransformerLM(ModelConfig(**{**TINY, **overrides, "kernels": "torch"}))
    reference = TransformerLM(ModelConfig(**{**TINY, **overrides, "kernels": "reference"}))
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def test_state_dict_names_and_shapes_llama() -> None:
    model = TransformerLM(ModelConfig.llama(**TINY, n_kv_heads=2))
    sd = model.state_dict()
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.{n}.weight" for n in
                     ("ln1", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.output_proj", "ln2", "ffn.w1", "ffn.w2", "ffn.w3")}
    assert set(sd) == expected
    assert sd["layers.0.attn.q_proj.weight"].shape == (32, 32)
    assert sd["layers.0.attn.k_proj.weight"].shape == (16, 32)  # 2 kv heads of 8
    assert sd["layers.0.ffn.w1.weight"].shape == (128, 32) and sd["layers.0.ffn.w2.weight"].shape == (32, 128)
    assert sd["lm_head.weight"].shape == (61, 32)


def test_state_dict_names_gpt2_and_tied_embeddings() -> None:
    model = TransformerLM(ModelConfig.gpt2(**TINY))
    sd = model.state_dict()
    assert "position_embeddings.weight" in sd and sd["position_embeddings.weight"].shape == (16, 32)
    for name in ("layers.1.ln1.bias", "layers.1.attn.output_proj.bias", "layers.1.ffn.w1.bias", "ln_final.bias"):
        assert name in sd
    assert "layers.0.ffn.w3.weight" not in sd
    assert model.lm_head.weight is model.token_embeddings.weight
    assert "lm_head.bias" not in sd


def test_init_scales_residual_projections() -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=512, d_model=256, n_layers=8, n_heads=4, init_std=0.02)
    model = TransformerLM(config)
    residual_std = 0.02 / math.sqrt(2 * 8)
    assert model.layers[0].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.layers[0].attn.output_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.layers[3].ffn.w2.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.token_embeddings.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(model.layers[0].ln1.weight, torch.ones(256))


@pytest.mark.parametrize("n_kv_heads", [4, 2])
@pytest.mark.parametrize("position", POSITIONS)
def test_torch_kernels_equal_reference_without_and_with_cache(position: str, n_kv_heads: int) -> None:
    fast, reference = _pair(position=position, n_kv_heads=n_kv_heads, norm="layernorm", ffn="gelu", bias=True)
    ids = _ids()
    expected = reference(ids)
    torch.testing.assert_close(fast(ids), expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(fast.loss(ids, ids), reference.loss(ids, ids), atol=1e-5, rtol=1e-5)
    for model in (fast, reference):
        cache = model.new_kv_cache(2)
        chunks = [model(ids[:, :5], kv_cache=cache), model(ids[:, 5:6], kv_cache=cache), model(ids[:, 6:], kv_cache=cache)]
        assert cache.length == 12
        torch.testing.assert_close(torch.cat(chunks, dim=1), expected, atol=2e-5, rtol=1e-4)


def test_torch_kernels_equal_reference_gradients() -> None:
    fast, reference = _pair(position="alibi", n_kv_heads=2)
    ids = _ids()
    fast.loss(ids, ids).backward()
    reference.loss(ids, ids).backward()
    for (name, a), b in zip(fast.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_explicit_token_positions() -> None:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**TINY, position="rope"))
    ids = _ids()
    torch.testing.assert_close(model(ids, token_positions=torch.arange(12)), model(ids))
    # RoPE depends only on relative positions: shifting every position changes nothing.
    torch.testing.assert_close(model(ids, token_positions=torch.arange(12) + 40), model(ids), atol=1e-5, rtol=1e-4)
    per_row = torch.stack([torch.arange(12), torch.arange(12) + 3])
    assert model(ids, token_positions=per_row).shape == (2, 12, 61)
    learned = TransformerLM(ModelConfig(**TINY, position="learned"))
    assert not torch.allclose(learned(ids, token_positions=torch.arange(12) + 1), learned(ids))


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
@pytest.mark.parametrize("kernels", ["torch", "reference"])
def test_presets_build_step_and_lower_the_loss(preset: str, kernels: str) -> None:
    torch.manual_seed(0)
    assert_learns(TransformerLM(getattr(ModelConfig, preset)(**TINY, kernels=kernels, dropout=0.1)))


def test_loss_equals_cross_entropy_of_logits_and_ignore_index() -> None:
    for kernels in ("torch", "reference"):
        torch.manual_seed(0)
        model = TransformerLM(ModelConfig(**TINY, kernels=kernels))
        ids = _ids()
        targets = _ids(seed=5)
        targets[0, :4] = -100
        expected = F.cross_entropy(model(ids).reshape(-1, 61), targets.reshape(-1), ignore_index=-100)
        torch.testing.assert_close(model.loss(ids, targets), expected)


def test_num_parameters_and_flops() -> None:
    c = ModelConfig.llama(**TINY)
    model = TransformerLM(c)
    d, f, v, L = 32, c.d_ff, 61, 2
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    assert model.num_parameters() == v * d + L * per_layer + d + v * d
    assert model.num_parameters(non_embedding=True) == L * per_layer + d + v * d
    assert model.flops_per_token() == 6 * (L * per_layer + d + v * d) + 12 * L * d * 16
    assert model.flops_per_token(seq_len=4) == 6 * (L * per_layer + d + v * d) + 12 * L * d * 4
    tied = TransformerLM(ModelConfig.gpt2(**TINY))
    n_tied = sum(p.numel() for p in tied.parameters())
    assert tied.num_parameters() == n_tied  # the shared matrix counts once
    assert tied.num_parameters(non_embedding=True) == n_tied - v * d - 16 * d
    assert tied.flops_per_token() == 6 * (n_tied - 16 * d) + 12 * L * d * 16


def test_bad_inputs_have_clear_messages() -> None:
    model = TransformerLM(ModelConfig(**TINY, position="learned"))
    with pytest.raises(UserError, match=r"integer token ids of shape \(batch, seq\)"):
        model(torch.zeros(2, 3))
    with pytest.raises(UserError, match=r"integer token ids of shape \(batch, seq\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(UserError, match="empty sequence"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(UserError, match=r"Token ids must lie in \[0, 61\)"):
        model(torch.tensor([[1, 61]]))
    with pytest.raises(UserError, match="17 tokens but context_length is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(UserError, match=r"token_positions must be an integer tensor of shape \(3,\) or \(1, 3\)"):
        model(torch.zeros(1, 3, dtype=torch.long), token_positions=torch.arange(4))
    with pytest.raises(UserError, match="past the learned position table"):
        model(torch.zeros(1, 3, dtype=torch.long), token_positions=torch.tensor([0, 1, 16]))
    with pytest.raises(UserError, match="Learned positions stop at context_length 16"):
        model.new_kv_cache(1, max_seq_len=32)
    cache = model.new_kv_cache(1)
    model(torch.zeros(1, 10, dtype=torch.long), kv_cache=cache)
    with pytest.raises(UserError, match="already has 10, so 7 more do not fit"):
        model(torch.zeros(1, 7, dtype=torch.long), kv_cache=cache)
    with pytest.raises(UserError, match="made for batch size 1 but ids have 2 rows"):
        model(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(UserError, match="targets have shape"):
        model.loss(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(UserError, match="needs a ModelConfig"):
        TransformerLM({"d_model": 32})  # type: ignore[arg-type]


@pytest.mark.parametrize("position", ["alibi", "rope"])
def test_runs_under_bf16_autocast_with_and_without_cache(position: str) -> None:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**TINY, position=position, n_kv_heads=2))
    ids = _ids()
    full32 = model.loss(ids, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
        cache = model.new_kv_cache(2)  # float32 cache, bf16 keys under autocast
        cached = torch.cat([model(ids[:, :7], kv_cache=cache), model(ids[:, 7:], kv_cache=cache)], dim=1)
        loss = model.loss(ids, ids)
    loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(cached.float(), logits.float(), atol=0.02, rtol=0.02)
    assert loss.item() == pytest.approx(full32.item(), abs=0.02)
    assert model.lm_head.weight.grad is not None


def _count_sparse_lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every token lookup that gives the table a sparse gradient (`head.sparse_lookup`)."""
    calls: list[int] = []
    sparse_lookup = head.sparse_lookup

    def recording(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        calls.append(ids.numel())
        return sparse_lookup(table, ids)

    monkeypatch.setattr(head, "sparse_lookup", recording)
    return calls


@pytest.mark.parametrize("chunk_tokens", [0, 8])
def test_tied_table_gets_the_same_dense_gradient_through_the_sparse_lookup(chunk_tokens: int, monkeypatch) -> None:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig.gpt2(**TINY))
    dense = TransformerLM(ModelConfig.gpt2(**TINY))
    dense.load_state_dict(model.state_dict())
    dense.lm_head.lookup = lambda table, ids: table[ids]  # the plain lookup, dense gradient
    sparse_lookups = _count_sparse_lookups(monkeypatch)
    ids = _ids()
    for m in (model, dense):
        m.loss(ids, ids.roll(1, dims=1), chunk_tokens=chunk_tokens).backward()
        m(ids).logsumexp(-1).sum().backward()  # forward() applies the head too
    assert sparse_lookups == [ids.numel(), ids.numel()]  # the model's loss and forward, not the dense copy's
    for (name, a), b in zip(model.named_parameters(), dense.parameters()):
        assert a.grad.layout == torch.strided, name
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-6, msg=name)


@pytest.mark.parametrize("case", ["hidden_states alone", "untied", "reference kernels", "no grad"])
def test_the_lookup_stays_dense_where_no_tied_head_follows(case: str, monkeypatch) -> None:
    overrides = {"untied": dict(tie_embeddings=False), "reference kernels": dict(kernels="reference")}
    model = TransformerLM(ModelConfig.gpt2(**{**TINY, **overrides.get(case, {})}))
    sparse_lookups = _count_sparse_lookups(monkeypatch)
    if case == "hidden_states alone":
        model.hidden_states(_ids()).sum().backward()
    elif case == "no grad":
        with torch.no_grad():
            model(_ids())
    else:
        model.loss(_ids(), _ids(seed=2)).backward()
    assert sparse_lookups == []
    if case != "no grad":
        assert model.token_embeddings.weight.grad.layout == torch.strided
