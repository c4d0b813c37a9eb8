"""SGD against torch.optim.SGD (with the inverse-time schedule as a matching LambdaLR), decoupled weight
decay against its formula, state-dict round trip, argument checks."""

from __future__ import annotations

import pytest
import torch

from llm_lit.errors import UserError
from llm_lit.optim import SGD, OptimizerConfigError, inverse_time_lr_at, peak_relative_scheduler

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def _params(seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for s in SHAPES]


def _set_grads(generator: torch.Generator, *param_lists: list[torch.Tensor]) -> None:
    for tensors in zip(*param_lists):
        grad = torch.randn(tensors[0].shape, generator=generator, dtype=torch.float64).to(tensors[0].dtype)
        for p in tensors:
            p.grad = grad.clone()


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgd_with_inverse_time_decay_matches_torch_sgd_and_lambda_lr(momentum: float, nesterov: bool,
                                                                     dtype: torch.dtype) -> None:
    lr, decay, steps = 0.1, 0.05, 25
    ours_params, torch_params = _params(0, dtype), _params(0, dtype)
    ours = SGD(ours_params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=0.0)
    theirs = torch.optim.SGD(torch_params, lr=lr, momentum=momentum, nesterov=nesterov, foreach=True)
    ours_schedule = peak_relative_scheduler(ours, lambda t: inverse_time_lr_at(t, lr, 0.0, 0, decay), lr)
    theirs_schedule = torch.optim.lr_scheduler.LambdaLR(theirs, lambda t: 1.0 / (1.0 + decay * t))
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        _set_grads(g, ours_params, torch_params)
        if step == 7:
            ours_params[1].grad = torch_params[1].grad = None  # a parameter without a gradient is left alone
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-15)
        ours.step(), theirs.step()
        ours_schedule.step(), theirs_schedule.step()
    tolerance = 1e-6 if dtype == torch.float32 else 1e-13
    for a, b in zip(ours_params, torch_params):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)
        if momentum:
            torch.testing.assert_close(ours.state[a]["momentum_buffer"], theirs.state[b]["momentum_buffer"],
                                       atol=tolerance, rtol=tolerance)
    assert ours.param_groups[0]["lr"] == pytest.approx(lr / (1 + decay * steps))
    assert not torch.equal(ours_params[0], _params(0, dtype)[0])
    assert (momentum == 0) == (len(ours.state) == 0)  # no buffer without momentum


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_at_a_fixed_lr_is_bitwise_torch_sgd(momentum: float, nesterov: bool) -> None:
    ours_params, torch_params = _params(4), _params(4)
    ours = SGD(ours_params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.0)
    theirs = torch.optim.SGD(torch_params, lr=0.1, momentum=momentum, nesterov=nesterov, foreach=True)
    g = torch.Generator().manual_seed(5)
    for _ in range(10):
        _set_grads(g, ours_params, torch_params)
        ours.step(), theirs.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_params, torch_params))


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_decoupled_weight_decay_follows_its_formula(momentum: float, nesterov: bool) -> None:
    lr, wd, steps = 0.05, 0.3, 12
    params = _params(2, torch.float64)
    expected = [p.detach().clone() for p in params]
    buffers = [torch.zeros_like(p) for p in params]
    ours = SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        _set_grads(g, params)
        for i, p in enumerate(params):  # the docstring's formula, one parameter at a time
            buffers[i] = momentum * buffers[i] + p.grad
            update = p.grad + momentum * buffers[i] if nesterov else (buffers[i] if momentum else p.grad)
            expected[i] = expected[i] * (1 - lr * wd) - lr * update
        ours.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, atol=1e-13, rtol=1e-13)


def test_decoupled_decay_is_not_torchs_coupled_l2_decay_with_momentum() -> None:
    ours_params, torch_params = _params(0), _params(0)
    ours = SGD(ours_params, lr=0.1, momentum=0.9, weight_decay=0.1)
    theirs = torch.optim.SGD(torch_params, lr=0.1, momentum=0.9, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        _set_grads(g, ours_params, torch_params)
        ours.step(), theirs.step()
    assert not torch.allclose(ours_params[0], torch_params[0], atol=1e-4)


def test_state_dict_round_trip_continues_the_same_trajectory() -> None:
    straight, resumed = _params(0), _params(0)
    first = SGD(straight, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    second = SGD(resumed, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(10):
        _set_grads(g, straight, resumed)
        first.step(), second.step()
        if step == 4:  # the second optimizer is rebuilt from its saved state, as on resume
            saved = second.state_dict()
            second = SGD(resumed, lr=1.0, momentum=0.1)
            second.load_state_dict(saved)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), r"lr must be >= 0 \(got -1.0\)"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\) \(got 1.0\)"),
    (dict(momentum=0.0, nesterov=True), "nesterov needs momentum > 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
])
def test_sgd_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(OptimizerConfigError, match=message) as info:
        SGD([torch.zeros(1, requires_grad=True)], **kwargs)
    assert isinstance(info.value, UserError)


def test_sgd_rejects_sparse_gradients() -> None:
    p = torch.zeros(4, 2, requires_grad=True)
    p.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(OptimizerConfigError, match="sparse gradients"):
        SGD([p]).step()
