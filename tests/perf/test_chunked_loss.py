"""The chunked lm_head + cross-entropy equals the plain path (values and gradients) and saves memory."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM, cross_entropy
from llm_lit.model.chunked_loss import AUTO_CHUNK_MIN_ELEMENTS, auto_chunk_tokens, chunked_linear_cross_entropy

sys.path.insert(0, str(Path(__file__).parent))
from saved_memory import saved_activation_bytes  # noqa: E402

SHAPE = dict(vocab_size=97, context_length=16, d_model=32, n_layers=2, n_heads=4)


def grads(model: TransformerLM, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
@pytest.mark.parametrize("chunk", [1, 7, 16, 48, 1000])
def test_chunked_loss_equals_plain_values_and_gradients(preset: str, chunk: int) -> None:
    torch.manual_seed(0)
    model = TransformerLM(getattr(ModelConfig, preset)(**SHAPE))
    ids = torch.randint(0, 97, (3, 16))
    targets = torch.randint(0, 97, (3, 16))
    targets[1, :5] = -100
    plain = model.loss(ids, targets, chunk_tokens=0)
    chunked = model.loss(ids, targets, chunk_tokens=chunk)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads(model, chunked), grads(model, model.loss(ids, targets, chunk_tokens=0))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("preset", ["gpt2", "llama"])
def test_default_loss_of_torch_kernels_is_the_one_chunk_function_and_equals_torch(preset: str) -> None:
    torch.manual_seed(3)
    model = TransformerLM(getattr(ModelConfig, preset)(**SHAPE, kernels="torch"))
    ids, targets = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    targets[2, 3:9] = -100
    assert model.lm_head.auto_chunk_tokens(targets.numel()) == targets.numel()  # small logits: one chunk
    default = model.loss(ids, targets)
    torch_loss = F.cross_entropy(model(ids).reshape(-1, 97), targets.reshape(-1))  # torch's own loss of the logits
    torch.testing.assert_close(default, torch_loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads(model, default), grads(model, F.cross_entropy(model(ids).reshape(-1, 97), targets.reshape(-1)))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    saved_default, _ = saved_activation_bytes(model, lambda: model.loss(ids, targets))
    saved_plain, _ = saved_activation_bytes(model, lambda: model.loss(ids, targets, chunk_tokens=0))
    assert saved_default < saved_plain  # the gradients (tokens x d_model, vocab x d_model) instead of the log-probs


def test_chunked_function_equals_torch_and_from_scratch_cross_entropy() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(5, 11, 24, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(301, 24, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 301, (5, 11))
    targets[0, 0] = -100
    ours = chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens=8)
    logits = hidden @ weight.T
    torch_loss = F.cross_entropy(logits.reshape(-1, 301), targets.reshape(-1))
    torch.testing.assert_close(ours, torch_loss.float())
    torch.testing.assert_close(ours, cross_entropy(logits, targets))
    g_ours = torch.autograd.grad(ours * 3.0, (hidden, weight))
    g_torch = torch.autograd.grad(torch_loss * 3.0, (hidden, weight))
    for a, b in zip(g_ours, g_torch):  # the softmax runs in float32, like the plain fused path
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_loss_under_bf16_autocast_matches_plain() -> None:
    torch.manual_seed(2)
    model = TransformerLM(ModelConfig.llama(**SHAPE))
    ids, targets = torch.randint(0, 97, (2, 16)), torch.randint(0, 97, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model.loss(ids, targets, chunk_tokens=0)
        chunked = model.loss(ids, targets, chunk_tokens=5)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, plain, rtol=2e-3, atol=2e-3)
    for a, b in zip(grads(model, chunked), grads(model, plain)):
        torch.testing.assert_close(a, b, rtol=0.05, atol=2e-3)


def test_chunked_loss_without_grad_and_all_ignored() -> None:
    model = TransformerLM(ModelConfig(**SHAPE))
    ids = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model.loss(ids, ids, chunk_tokens=4), model.loss(ids, ids, chunk_tokens=0))
    ignored = torch.full_like(ids, -100)
    assert math.isnan(model.loss(ids, ignored, chunk_tokens=4).item())
    assert math.isnan(model.loss(ids, ignored, chunk_tokens=0).item())


def test_tied_output_layer_gets_both_gradients() -> None:
    torch.manual_seed(3)
    model = TransformerLM(ModelConfig.gpt2(**SHAPE))
    assert model.lm_head.weight is model.token_embeddings.weight
    ids = torch.randint(0, 97, (2, 16))
    model.loss(ids, ids, chunk_tokens=3).backward()
    chunked = model.token_embeddings.weight.grad.clone()
    model.zero_grad()
    model.loss(ids, ids, chunk_tokens=0).backward()
    torch.testing.assert_close(chunked, model.token_embeddings.weight.grad, rtol=1e-5, atol=1e-7)


def test_automatic_chunking_takes_small_logits_in_one_chunk_and_cuts_large_ones() -> None:
    assert auto_chunk_tokens(1024, 1024) == 1024
    chunk = auto_chunk_tokens(16 * 1024, 50304)
    assert chunk > 0 and chunk % 128 == 0 and chunk * 50304 * 4 <= 2**28
    assert auto_chunk_tokens(AUTO_CHUNK_MIN_ELEMENTS // 100 + 1, 100) > 0
    model = TransformerLM(ModelConfig(**SHAPE))
    model.loss_chunk_tokens = 5  # the model's default is used when loss() gets none
    ids = torch.randint(0, 97, (2, 16))
    saved_chunked, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids))
    saved_plain, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids, chunk_tokens=0))
    assert saved_chunked != saved_plain


def test_chunked_loss_never_saves_the_whole_logits() -> None:
    config = ModelConfig(vocab_size=4096, context_length=64, d_model=32, n_layers=1, n_heads=2)
    model = TransformerLM(config)
    ids = torch.randint(0, 4096, (8, 64))
    plain, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids, chunk_tokens=0))
    chunked, _ = saved_activation_bytes(model, lambda: model.loss(ids, ids, chunk_tokens=64))
    logits_bytes = 8 * 64 * 4096 * 4
    assert plain >= logits_bytes
    assert chunked < plain - logits_bytes // 2


@pytest.mark.parametrize("bad", [-1, 2.5, True, "64"])
def test_bad_chunk_tokens_is_one_sentence(bad) -> None:
    model = TransformerLM(ModelConfig(**SHAPE))
    ids = torch.randint(0, 97, (1, 8))
    with pytest.raises(UserError, match="chunk_tokens must be a non-negative integer"):
        model.loss(ids, ids, chunk_tokens=bad)
