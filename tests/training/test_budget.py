"""The wall-time budget (`llm_lit.training.budget`): its horizon and stopping rule against their formulas on a fake
clock, the schedule re-planned from a horizon, and `llm_lit fit --time_budget` end to end."""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, run_cli, scalars
from llm_lit.training.budget import (RESERVE_FACTOR, RESERVE_MARGIN_FRACTION, RESERVE_MARGIN_S, SYNC_EVERY, UNMEASURED_RESERVE_FRACTION, TimeBudget, check_time_budget, seconds_since_process_start, time_budget_of)
from llm_lit.errors import UserError
from llm_lit.optim import OptimizerConfig, WsdSettings
from llm_lit.optim.config import schedule_function


class FakeClock:
    """Seconds since a fake process start, moved by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fake_trainer(world_size: int = 1, strategy: object = None) -> SimpleNamespace:
    return SimpleNamespace(global_step=0, should_stop=False, sanity_checking=False, is_global_zero=False,
                           world_size=world_size, strategy=strategy)


def take_step(budget: TimeBudget, trainer: SimpleNamespace, clock: FakeClock, seconds: float) -> None:
    """One optimizer step of `seconds`, through the hooks Lightning calls."""
    budget.on_train_batch_start(trainer, None, None, 0)
    clock.now += seconds
    trainer.global_step += 1
    budget.on_train_batch_end(trainer, None, None, None, 0)


def margin(seconds: float) -> float:
    return RESERVE_MARGIN_S + RESERVE_MARGIN_FRACTION * seconds


def test_horizon_and_stop_follow_their_formulas() -> None:
    clock, trainer = FakeClock(10.0), fake_trainer()  # 10 s of start-up before training
    budget = TimeBudget(100.0, clock=clock)
    budget.on_train_start(trainer, None)
    assert budget.horizon(0, cap=5000) == 5000  # nothing measured yet: the cap
    take_step(budget, trainer, clock, 3.0)  # the first step (start-up costs) is not timed
    assert budget.seconds_per_step() is None and budget.horizon(1, cap=5000) == 5000
    for _ in range(4):
        take_step(budget, trainer, clock, 0.5)
    assert budget.seconds_per_step() == pytest.approx(0.5)
    reserve = UNMEASURED_RESERVE_FRACTION * 100 + margin(100)
    assert budget.reserve() == pytest.approx(reserve)
    left = 100 - clock.now - reserve  # clock.now = 15
    assert budget.horizon(5, cap=5000) == 5 + math.floor(left / 0.5)
    assert budget.horizon(5, cap=20) == 20  # capped by max_steps
    # steady steps keep the horizon where it was
    expected = budget.horizon(5, cap=5000)
    for step in range(6, 30):
        take_step(budget, trainer, clock, 0.5)
        assert budget.horizon(step, cap=5000) in (expected - 1, expected)


class RankZeroSays:
    """A strategy's `broadcast` whose rank 0 said `said` (another process's decision, in a two-rank run)."""

    def __init__(self) -> None:
        self.said: tuple[int, bool] = (0, False)
        self.calls = 0

    def broadcast(self, obj: object, src: int = 0) -> object:
        assert src == 0 and isinstance(obj, tuple) and len(obj) == 2  # (horizon, stop) of this rank
        self.calls += 1
        return self.said


def test_every_rank_follows_rank_zeros_horizon_and_stop() -> None:
    # A rank whose own clock would plan another horizon (it started later) takes rank 0's, so the ranks
    # keep one learning rate and stop at the same step.
    clock, rank_zero = FakeClock(0.0), RankZeroSays()
    trainer = fake_trainer(world_size=2, strategy=rank_zero)
    budget = TimeBudget(100.0, clock=clock)
    budget.on_train_start(trainer, None)
    rank_zero.said = (1234, False)
    for _ in range(SYNC_EVERY - 1):
        take_step(budget, trainer, clock, 0.5)
        assert budget.horizon(trainer.global_step, cap=5000) == 5000  # the cap until rank 0 has said
    take_step(budget, trainer, clock, 0.5)
    # one collective every SYNC_EVERY steps (each makes every rank wait for the slowest)
    assert rank_zero.calls == 1 and budget.horizon(SYNC_EVERY, cap=5000) == 1234
    assert budget.horizon(SYNC_EVERY, cap=1000) == 1000
    assert budget.estimated_horizon(SYNC_EVERY, cap=5000) != 1234  # its own clock says otherwise
    rank_zero.said = (1500, True)
    for _ in range(SYNC_EVERY - 1):
        take_step(budget, trainer, clock, 0.5)
    assert rank_zero.calls == 1 and not trainer.should_stop  # no step of its own decides
    take_step(budget, trainer, clock, 0.5)
    assert rank_zero.calls == 2 and trainer.should_stop and budget.stopped_at == 2 * SYNC_EVERY  # rank 0 stopped


def test_with_several_processes_rank_zero_stops_when_the_steps_to_the_next_broadcast_would_not_fit() -> None:
    clock = FakeClock(0.0)
    budget = TimeBudget(100.0, clock=clock)
    clock.now = 100.0 - budget.reserve() - 2.0  # 2 s left: one 0.5 s step fits, SYNC_EVERY of them do not
    budget._first_step_end, budget._steps_timed = 0.0, max(1, int(clock.now / 0.5))
    assert not budget.should_stop() and budget.should_stop(SYNC_EVERY)


def test_stops_when_one_more_step_and_the_reserve_would_overrun() -> None:
    clock, trainer = FakeClock(0.0), fake_trainer()
    budget = TimeBudget(60.0, clock=clock)
    budget.on_train_start(trainer, None)
    reserve = UNMEASURED_RESERVE_FRACTION * 60 + margin(60)
    while not trainer.should_stop:
        before = clock.now
        take_step(budget, trainer, clock, 1.0)
        per_step = 1.0 if trainer.global_step > 1 else 0.0
        assert trainer.should_stop == (clock.now + per_step + reserve >= 60), before
    assert budget.stopped_at == trainer.global_step
    assert clock.now + 1.0 + reserve >= 60 > clock.now + reserve  # stopped at the last step that fits


def test_the_reserve_is_the_longest_validation_pause() -> None:
    clock, trainer = FakeClock(0.0), fake_trainer()
    budget = TimeBudget(1000.0, clock=clock)
    budget.on_train_start(trainer, None)
    take_step(budget, trainer, clock, 1.0)
    trainer.sanity_checking = True
    budget.on_validation_start(trainer, None)  # the sanity check is not a full validation
    clock.now += 50.0
    trainer.sanity_checking = False
    take_step(budget, trainer, clock, 1.0)
    assert budget.longest_pause is None
    for pause in (4.0, 7.0, 5.0):
        budget.on_validation_start(trainer, None)
        clock.now += pause  # validation, samples and checkpoint writes
        take_step(budget, trainer, clock, 1.0)
    assert budget.longest_pause == pytest.approx(7.0)
    assert budget.reserve() == pytest.approx(RESERVE_FACTOR * 7.0 + margin(1000))


def test_gradient_accumulation_counts_optimizer_steps() -> None:
    clock, trainer = FakeClock(0.0), fake_trainer()
    budget = TimeBudget(1000.0, clock=clock)
    budget.on_train_start(trainer, None)
    for micro in range(12):  # 3 micro-batches per optimizer step
        budget.on_train_batch_start(trainer, None, None, micro)
        clock.now += 1.0
        if micro % 3 == 2:
            trainer.global_step += 1
        budget.on_train_batch_end(trainer, None, None, None, micro)
    assert budget.seconds_per_step() == pytest.approx(3.0)


def test_state_travels_to_a_resumed_run() -> None:
    clock = FakeClock(40.0)
    budget = TimeBudget(100.0, clock=clock)
    budget.longest_pause = 2.5
    assert budget.horizon(10, cap=1000) == 1000  # nothing timed yet: the cap
    budget._planned = 700  # as planned from a timed step
    state = budget.state_dict()
    assert state == {"seconds_used": 40.0, "longest_pause": 2.5, "planned_horizon": 700}
    resumed_clock = FakeClock(5.0)
    resumed = TimeBudget(100.0, clock=resumed_clock)
    resumed.load_state_dict(state)
    assert resumed.elapsed() == pytest.approx(45.0)
    assert resumed.reserve() == pytest.approx(RESERVE_FACTOR * 2.5 + margin(100))
    # until the resumed process has timed a step of its own, the schedule follows the plan it resumed, not the cap
    assert resumed.horizon(11, cap=1000) == 700


def test_a_run_that_used_its_budget_is_not_resumed_for_a_step_but_a_larger_budget_extends_it() -> None:
    state = {"seconds_used": 585.0, "longest_pause": 2.0}  # a run stopped by its 590 s budget
    with pytest.raises(UserError, match=r"^This run has used 585 s of its 590 s time budget, so a resume would have "
                                        r"no time left to train; pass the run's new total, e\.g\. --time_budget 1180"):
        TimeBudget(590.0, clock=FakeClock(5.0)).load_state_dict(state)
    extended = TimeBudget(1180.0, clock=FakeClock(5.0))
    extended.load_state_dict(state)
    assert extended.elapsed() == pytest.approx(590.0) and not extended.should_stop()


@pytest.mark.slow
def test_a_budget_ended_run_resumed_through_the_cli(tmp_path) -> None:
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "100000", "--trainer.val_check_interval", "50",
            "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]", "--torch_threads", "1"]
    first = run_cli([*args, "--time_budget", "15"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    step = torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    again = run_cli([*args, "--time_budget", "15", "--ckpt_path", "last"], tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith(
        "error: This run has used ") and "Traceback" not in again.stderr
    longer = run_cli([*args, "--time_budget", "30", "--ckpt_path", "last"], tmp_path)
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] > step


def test_process_clock_counts_from_the_process_start() -> None:
    started = seconds_since_process_start()
    assert started > 0  # pytest and torch were imported before this test ran
    time.sleep(0.05)
    assert seconds_since_process_start() >= started + 0.04


def test_bad_budgets_are_refused() -> None:
    for bad in (0, -5, math.inf, math.nan):
        with pytest.raises(UserError, match="time_budget must be a positive number of seconds"):
            check_time_budget(bad)
        with pytest.raises(ValueError, match="positive number of seconds"):
            TimeBudget(bad)
    check_time_budget(None)
    assert time_budget_of(SimpleNamespace(callbacks=[object(), TimeBudget(5)])).seconds == 5
    assert time_budget_of(None) is None


# ---------------------------------------------------------------------- the schedule re-planned from a horizon
SCHEDULES = [
    OptimizerConfig(lr=1.0, min_lr=0.1, warmup_steps=10),
    OptimizerConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="wsd", wsd=WsdSettings(decay_fraction=0.3)),
    OptimizerConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="wsd",
                    wsd=WsdSettings(decay_fraction=0.5, decay_shape="1-sqrt")),
    OptimizerConfig(lr=1.0, min_lr=0.1, warmup_steps=10, schedule="inverse_time"),
]


@pytest.mark.parametrize("config", SCHEDULES, ids=lambda c: c.schedule + "-" + c.wsd.decay_shape)
def test_a_constant_horizon_is_the_fixed_schedule(config: OptimizerConfig) -> None:
    fixed = schedule_function(config, 137)
    planned = schedule_function(config, 100000, horizon=lambda step: 137)
    assert [planned(i) for i in range(160)] == [fixed(i) for i in range(160)]


@pytest.mark.parametrize("config", SCHEDULES, ids=lambda c: c.schedule + "-" + c.wsd.decay_shape)
def test_the_horizon_is_clamped_to_what_the_schedule_accepts(config: OptimizerConfig) -> None:
    too_short = schedule_function(config, 1000, horizon=lambda step: 3)  # shorter than the warmup
    shortest = 10 if config.schedule != "wsd" else next(
        n for n in range(10, 1000) if n - round(config.wsd.decay_fraction * n) >= 10)
    assert [too_short(i) for i in range(40)] == [schedule_function(config, shortest)(i) for i in range(40)]
    too_long = schedule_function(config, 200, horizon=lambda step: 10**9)
    assert [too_long(i) for i in range(220)] == [schedule_function(config, 200)(i) for i in range(220)]


def test_a_shrinking_horizon_still_ends_at_min_lr() -> None:
    config = SCHEDULES[0]
    lr = schedule_function(config, 10**6, horizon=lambda step: max(step, 300 - step // 2))
    assert lr(10) == pytest.approx(1.0)
    assert lr(200) == pytest.approx(0.1)  # the horizon reached the step: the end of the schedule
    values = [lr(i) for i in range(10, 201)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:]))  # still decays monotonically


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_fit_with_a_time_budget_stops_in_time_and_ends_its_schedule(tmp_path: Path) -> None:
    budget = 45.0
    started = time.monotonic()
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "100000", "--time_budget",
                      str(budget), "--trainer.val_check_interval", "10", "--trainer.log_every_n_steps", "1",
                      "--model.optimizer.warmup_steps", "2", "--data.cache_dir", str(tmp_path / "cache"),
                      "--torch_threads", "1", "--trainer.enable_progress_bar", "false"], cwd=tmp_path)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Time budget: stopping after step" in result.stdout
    lrs = scalars(tmp_path / DEBUG_RUN, "lr")
    last_step = int(result.stdout.split("Time budget: stopping after step ")[1].split()[0])
    assert 10 < last_step < 100000
    # validated at the last step, and the checkpoint is of that step
    assert scalars(tmp_path / DEBUG_RUN, "val/bpb")[-1][0] == last_step - 1
    ckpt = torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == last_step
    # the schedule was planned to end at the last step: lr fell from the peak to near min_lr (0.001 of 0.01)
    assert max(v for _, v in lrs) > 0.009
    assert lrs[-1][1] < 0.001 + 0.25 * (0.01 - 0.001)
    assert wall < budget + 15  # the slack covers the interpreter start before the process clock and a busy machine


@pytest.mark.slow
def test_a_resumed_run_counts_the_seconds_its_first_process_used(tmp_path: Path) -> None:
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "100000", "--time_budget", "30",
            "--trainer.val_check_interval", "10", "--data.cache_dir", str(tmp_path / "cache"), "--torch_threads", "1",
            "--trainer.enable_progress_bar", "false"]
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / DEBUG_CKPTS / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    used = next(v for k, v in saved["callbacks"].items() if k.startswith("TimeBudget"))["seconds_used"]
    assert 15 < used <= 30
    resumed = run_cli([*args, "--ckpt_path", "last", "--time_budget", "60"], cwd=tmp_path)  # a new total of 60 s
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = torch.load(last, weights_only=True)
    used_in_all = next(v for k, v in again["callbacks"].items() if k.startswith("TimeBudget"))["seconds_used"]
    assert again["global_step"] > saved["global_step"] and used < used_in_all <= 60  # both processes' seconds
