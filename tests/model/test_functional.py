"""From-scratch functions against torch.nn.functional on seeded random inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_lit.model.functional import cross_entropy, gelu, log_softmax, silu, softmax


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(4, 7, 33, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_and_log_softmax_match_torch(x: torch.Tensor, dim: int) -> None:
    torch.testing.assert_close(softmax(x, dim), F.softmax(x, dim))
    torch.testing.assert_close(log_softmax(x, dim), F.log_softmax(x, dim))


def test_softmax_is_stable_for_huge_logits(x: torch.Tensor) -> None:
    big = x * 1000 + 1e4
    out = softmax(big)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.softmax(big, -1))
    torch.testing.assert_close(log_softmax(big), F.log_softmax(big, -1))


@pytest.mark.parametrize("transform", [lambda z: z, lambda z: z + 100, lambda z: z * 1000], ids=["plain", "shift100", "scale1000"])
def test_cross_entropy_matches_torch(transform) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(1)
    logits = transform(torch.randn(3, 5, 50, generator=g))
    targets = torch.randint(0, 50, (3, 5), generator=g)
    expected = F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), expected)


def test_cross_entropy_ignore_index_and_gradient() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(10, 20, generator=g, requires_grad=True)
    targets = torch.randint(0, 20, (10,), generator=g)
    targets[::3] = -100
    ours = cross_entropy(logits, targets)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, targets, ignore_index=-100)
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(grad_ours, grad_theirs)
    targets[targets == -100] = 7
    torch.testing.assert_close(cross_entropy(logits, targets, ignore_index=7),
                               F.cross_entropy(logits, targets, ignore_index=7))


def test_cross_entropy_upcasts_low_precision_logits() -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(16, 100, generator=g) * 10).to(torch.bfloat16)
    targets = torch.randint(0, 100, (16,), generator=g)
    out = cross_entropy(logits, targets)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(logits.float(), targets))


def test_silu_and_gelu_match_torch(x: torch.Tensor) -> None:
    torch.testing.assert_close(silu(x), F.silu(x))
    torch.testing.assert_close(gelu(x), F.gelu(x))
    torch.testing.assert_close(gelu(x * 10), F.gelu(x * 10))
