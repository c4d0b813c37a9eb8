"""Global-norm clipping against torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

import pytest
import torch

from llm_lit.optim import OptimizerConfigError, clip_grad_norm


def _params_with_grads(scale: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=g).requires_grad_() for s in [(4, 3), (5,), (2, 2)]]
    for p in params[:2]:
        p.grad = torch.randn(p.shape, generator=g) * scale
    params[2].requires_grad_(False)  # frozen: no gradient, ignored by the norm
    return params


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (0.01, 1.0), (1.0, 0.5)])
def test_clip_matches_torch_with_a_frozen_parameter(scale: float, max_norm: float) -> None:
    ours, theirs = _params_with_grads(scale), _params_with_grads(scale)
    norm_ours = clip_grad_norm(ours, max_norm)
    norm_theirs = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm_ours, norm_theirs)
    for a, b in zip(ours, theirs):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad)
    clipped = torch.cat([p.grad.flatten() for p in ours if p.grad is not None]).norm()
    assert clipped.item() <= max_norm + 1e-4


def test_clip_returns_the_norm_before_clipping_and_accepts_one_tensor() -> None:
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert clip_grad_norm(p, 1.0).item() == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([3.0, 4.0, 0.0]) / (5.0 + 1e-6))
    assert clip_grad_norm([torch.zeros(2, requires_grad=True)], 1.0).item() == 0.0


def test_clip_rejects_non_positive_max_norm() -> None:
    with pytest.raises(OptimizerConfigError, match="max_norm must be a positive number"):
        clip_grad_norm([torch.zeros(1)], 0.0)
