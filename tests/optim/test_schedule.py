"""Cosine-with-warmup schedule against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from llm_lit.optim import AdamW, OptimizerConfigError, cosine_warmup_scheduler, lr_at

ARGS = dict(max_lr=1.0, min_lr=0.1, warmup_iters=10, cosine_cycle_iters=110)


def test_lr_at_hand_computed_values() -> None:
    assert lr_at(0, **ARGS) == 0.0
    assert lr_at(5, **ARGS) == pytest.approx(0.5)  # warmup: linear
    assert lr_at(10, **ARGS) == pytest.approx(1.0)  # peak
    assert lr_at(60, **ARGS) == pytest.approx(0.55)  # half-way down the cosine: (max + min) / 2
    assert lr_at(35, **ARGS) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, **ARGS) == pytest.approx(0.1)  # end of the cycle
    assert lr_at(500, **ARGS) == pytest.approx(0.1)  # past the cycle
    assert lr_at(0, 1.0, 0.1, 0, 10) == pytest.approx(1.0)  # no warmup
    assert lr_at(7, 1.0, 0.1, 5, 5) == pytest.approx(0.1)  # warmup straight into the floor


def test_lr_at_rejects_a_cycle_shorter_than_warmup() -> None:
    with pytest.raises(OptimizerConfigError, match="0 <= warmup_iters <= cosine_cycle_iters"):
        lr_at(0, 1.0, 0.1, 20, 10)


def test_scheduler_wrapper_follows_lr_at() -> None:
    params = [torch.zeros(2, requires_grad=True)]
    optimizer = AdamW([{"params": params, "lr": 123.0}])
    scheduler = cosine_warmup_scheduler(optimizer, **ARGS)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    seen = []
    for _ in range(130):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([lr_at(i, **ARGS) for i in range(130)])


def test_scheduler_rejects_negative_rates() -> None:
    optimizer = AdamW([torch.zeros(1, requires_grad=True)])
    with pytest.raises(OptimizerConfigError, match="Learning rates must be >= 0"):
        cosine_warmup_scheduler(optimizer, max_lr=1.0, min_lr=-0.1, warmup_iters=1, cosine_cycle_iters=2)
