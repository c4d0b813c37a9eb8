"""The schedules (cosine with warmup, warmup-stable-decay, inverse time) against hand-computed values and
their formulas, and the LambdaLR wrappers."""

from __future__ import annotations

import math

import pytest
import torch

from llm_lit.optim import (AdamW, OptimizerConfigError, cosine_warmup_scheduler, inverse_time_lr_at, lr_at,
                           peak_relative_scheduler, wsd_lr_at)

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


# ---------------------------------------------------------------------- warmup-stable-decay, inverse time
WSD = dict(max_lr=1.0, min_lr=0.1, warmup_iters=10, decay_start=80, total_iters=100)


def test_wsd_hand_computed_values() -> None:
    assert wsd_lr_at(0, **WSD) == 0.0
    assert wsd_lr_at(4, **WSD) == pytest.approx(0.4)  # warmup: linear
    assert wsd_lr_at(10, **WSD) == 1.0 and wsd_lr_at(50, **WSD) == 1.0 and wsd_lr_at(80, **WSD) == 1.0  # stable
    assert wsd_lr_at(85, **WSD) == pytest.approx(0.1 + 0.9 * 0.75)  # a quarter into the linear decay
    assert wsd_lr_at(90, **WSD) == pytest.approx(0.55)
    assert wsd_lr_at(85, **WSD, shape="1-sqrt") == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.25)))  # = 0.55
    assert wsd_lr_at(100, **WSD) == pytest.approx(0.1) and wsd_lr_at(130, **WSD) == pytest.approx(0.1)
    assert wsd_lr_at(0, 1.0, 0.1, 0, 0, 10) == pytest.approx(1.0)  # no warmup, no plateau: decay from step 0
    assert wsd_lr_at(5, 1.0, 0.0, 0, 10, 10) == 1.0  # no decay: flat to the end


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_against_its_formula_at_every_step(shape: str) -> None:
    for it in range(120):
        if it < 10:
            expected = it / 10
        elif it < 80:
            expected = 1.0
        elif it < 100:
            p = (it - 80) / 20
            expected = 0.1 + 0.9 * ((1 - p) if shape == "linear" else (1 - math.sqrt(p)))
        else:
            expected = 0.1
        assert wsd_lr_at(it, **WSD, shape=shape) == pytest.approx(expected, abs=1e-15), it


@pytest.mark.parametrize("args", [dict(warmup_iters=20, decay_start=10, total_iters=30),
                                  dict(warmup_iters=0, decay_start=40, total_iters=30),
                                  dict(warmup_iters=-1, decay_start=10, total_iters=30)])
def test_wsd_rejects_overlapping_phases(args: dict) -> None:
    with pytest.raises(OptimizerConfigError, match="0 <= warmup_iters <= decay_start <= total_iters"):
        wsd_lr_at(0, 1.0, 0.1, **args)


def test_inverse_time_against_its_formula() -> None:
    for it in range(200):  # no warmup, no floor: the classic lr / (1 + decay t)
        assert inverse_time_lr_at(it, 0.5, 0.0, 0, 0.03) == pytest.approx(0.5 / (1 + 0.03 * it), rel=1e-15)
    assert inverse_time_lr_at(3, 0.5, 0.0, 6, 0.03) == pytest.approx(0.25)  # warmup: linear
    assert inverse_time_lr_at(16, 0.5, 0.0, 6, 0.03) == pytest.approx(0.5 / 1.3)  # decay counted from warmup's end
    assert inverse_time_lr_at(10_000, 0.5, 0.01, 6, 0.03) == 0.01  # never below the floor
    with pytest.raises(OptimizerConfigError, match="decay >= 0"):
        inverse_time_lr_at(0, 0.5, 0.0, 0, -0.1)


def test_peak_relative_scheduler_scales_each_group_to_its_own_peak() -> None:
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    optimizer = AdamW([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 20.0}])
    scheduler = peak_relative_scheduler(optimizer, lambda it: wsd_lr_at(it, **WSD), 1.0)
    for it in range(110):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(wsd_lr_at(it, **WSD))
        assert optimizer.param_groups[1]["lr"] == pytest.approx(20.0 * wsd_lr_at(it, **WSD))
        optimizer.step()
        scheduler.step()
