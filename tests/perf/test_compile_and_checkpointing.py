"""torch.compile traces the training step without graph breaks; activation checkpointing is exact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from llm_lit.model import ModelConfig, TransformerLM

sys.path.insert(0, str(Path(__file__).parent))
from saved_memory import saved_activation_bytes  # noqa: E402

SHAPE = dict(vocab_size=128, context_length=16, d_model=32, n_layers=2, n_heads=4)
CONFIGS = {
    "gpt2": ModelConfig.gpt2(**SHAPE),
    "llama-gqa": ModelConfig.llama(**SHAPE, n_kv_heads=2),
    "alibi": ModelConfig(**SHAPE, position="alibi"),
    "sinusoidal-reference": ModelConfig(**SHAPE, position="sinusoidal", kernels="reference"),
    "options": ModelConfig(**SHAPE, qk_norm=True, ffn="relu2", zero_init_residual=True, embedding_scale=2.0,
                           logit_scale=0.5, logit_softcap=30.0, tie_embeddings=True),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("chunk_tokens", [0, 8])
def test_training_step_has_no_graph_breaks(name: str, chunk_tokens: int) -> None:
    torch._dynamo.reset()
    model = TransformerLM(CONFIGS[name])
    ids, targets = torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 16))

    def step(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return model.loss(ids, targets, chunk_tokens=chunk_tokens)

    explanation = torch._dynamo.explain(step)(ids, targets)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_activation_checkpointing_traces_without_graph_breaks() -> None:
    torch._dynamo.reset()
    model = TransformerLM(CONFIGS["llama-gqa"])
    model.set_activation_checkpointing(True)
    ids = torch.randint(0, 128, (2, 16))
    explanation = torch._dynamo.explain(model.loss)(ids, ids)
    assert explanation.graph_break_count == 0, explanation.break_reasons


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama-gqa", "options"])
def test_compiled_training_step_equals_eager(name: str) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = TransformerLM(CONFIGS[name])
    compiled = TransformerLM(CONFIGS[name])
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    ids, targets = torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 16))
    loss_e, loss_c = eager.loss(ids, targets), compiled.loss(ids, targets)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-5)
    loss_e.backward()
    loss_c.backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert set(compiled.state_dict()) == set(eager.state_dict())


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "options"])
def test_activation_checkpointing_gives_identical_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = TransformerLM(CONFIGS[name])
    ids, targets = torch.randint(0, 128, (3, 16)), torch.randint(0, 128, (3, 16))
    loss = model.loss(ids, targets)
    expected = torch.autograd.grad(loss, list(model.parameters()))
    model.set_activation_checkpointing(True)
    loss_ckpt = model.loss(ids, targets)
    torch.testing.assert_close(loss_ckpt, loss)
    for a, b in zip(torch.autograd.grad(loss_ckpt, list(model.parameters())), expected):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_activation_checkpointing_saves_less_and_only_when_training() -> None:
    model = TransformerLM(ModelConfig.llama(**{**SHAPE, "n_layers": 4}))
    ids = torch.randint(0, 128, (4, 16))
    full, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids, chunk_tokens=0))
    model.set_activation_checkpointing(True)
    # (the blocks' inputs that checkpoint keeps are held by its own hooks, so they are not counted here)
    recomputed, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids, chunk_tokens=0))
    assert recomputed < full / 2
    model.eval()  # evaluation never recomputes: same values, nothing to save for backward
    with torch.no_grad():
        torch.testing.assert_close(model.loss(ids, ids), model.train().loss(ids, ids).detach())
    cache = model.new_kv_cache(4)  # generation with a KV cache ignores the option
    logits = model(ids[:, :8], kv_cache=cache)
    assert logits.shape == (4, 8, 128) and cache.length == 8
