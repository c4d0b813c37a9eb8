"""AdamW against torch.optim.AdamW; parameter groups; argument checks."""

from __future__ import annotations

import pytest
import torch

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.optim import AdamW, OptimizerConfigError, param_groups


def _params(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    return [torch.randn(s, generator=g).requires_grad_() for s in shapes]


@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch_over_20_steps(weight_decay: float, compile: bool) -> None:
    ours_params, torch_params = _params(0), _params(0)
    kwargs = dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    ours = AdamW(ours_params, compile=compile, **kwargs)
    theirs = torch.optim.AdamW(torch_params, **kwargs)
    g = torch.Generator().manual_seed(1)
    for step in range(20):
        for a, b in zip(ours_params, torch_params):
            grad = torch.randn(a.shape, generator=g)
            a.grad, b.grad = grad.clone(), grad.clone()
        if step == 5:
            ours_params[1].grad = torch_params[1].grad = None  # a parameter without a gradient is skipped
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, torch_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not torch.equal(ours_params[0], _params(0)[0])


def test_adamw_with_param_groups_and_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig.gpt2(vocab_size=31, context_length=8, d_model=16, n_layers=1, n_heads=2))
    twin = TransformerLM(ModelConfig.gpt2(vocab_size=31, context_length=8, d_model=16, n_layers=1, n_heads=2))
    twin.load_state_dict(model.state_dict())
    ours = AdamW(param_groups(model, 0.1), lr=1e-2)
    theirs = torch.optim.AdamW(param_groups(twin, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ids = torch.randint(0, 31, (2, 8))
    for i in range(20):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad()
            m.loss(ids, ids).backward()
            opt.step()
        if i == 10:  # a checkpoint round trip does not change the trajectory
            ours.load_state_dict(ours.state_dict())
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_param_groups_exclude_norms_biases_and_embeddings() -> None:
    model = TransformerLM(ModelConfig.gpt2(vocab_size=31, context_length=8, d_model=16, n_layers=2, n_heads=2))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert "layers.0.attn.q_proj.weight" in decayed and "layers.1.ffn.w2.weight" in decayed
    assert {"token_embeddings.weight", "position_embeddings.weight", "layers.0.ln1.weight", "layers.0.ln1.bias",
            "layers.0.attn.q_proj.bias", "ln_final.weight"} <= not_decayed
    assert not any("bias" in n or "ln" in n or "embeddings" in n for n in decayed)
    # The tied lm_head is the embedding table: listed once, not decayed.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_param_groups_skip_frozen_parameters() -> None:
    model = TransformerLM(ModelConfig.llama(vocab_size=31, context_length=8, d_model=16, n_layers=1, n_heads=2))
    model.token_embeddings.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert all(p is not model.token_embeddings.weight for g in groups for p in g["params"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), r"lr must be >= 0 \(got -1.0\)"),
    (dict(betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\)"),
    (dict(eps=-1e-8), r"eps must be >= 0"),
    (dict(weight_decay=-0.1), r"weight_decay must be >= 0"),
])
def test_adamw_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(OptimizerConfigError, match=message) as info:
        AdamW([torch.zeros(1, requires_grad=True)], **kwargs)
    assert isinstance(info.value, UserError)


def test_adamw_rejects_sparse_gradients() -> None:
    p = torch.zeros(4, 2, requires_grad=True)
    p.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(OptimizerConfigError, match="sparse gradients"):
        AdamW([p]).step()
