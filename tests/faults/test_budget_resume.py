"""A time-budgeted, compiled, two-process (DDP) run killed with SIGKILL and resumed with `--ckpt_path last` ends
bitwise equal to the same run uninterrupted: the same stopping step, schedule, weights, optimizer state and logs.

The budget reads `step_clock.StepClock` (one second per optimizer step) instead of the wall clock, so that where the
run stops and the horizon its schedule follows do not depend on the machine's speed. The kill falls between two of
the budget's broadcasts of rank 0's horizon (every 25 steps), so the resumed run must carry the agreed horizon over
rather than fall back to the schedule's cap until the next broadcast.

Each process runs one torch thread, as the default CPU placement does: with several, the compiled backward of the
embedding adds rows with atomic adds across threads (inductor's CPU scatter-add), whose order, and so whose float
rounding, varies from run to run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from fault_helpers import assert_same_logs, assert_same_training_state, checkpoint_step, faults_env, signal_at

# 70 s of budget at 1 s a step: rank 0's broadcast at step 50 finds that 25 more steps would not fit, so the run
# stops at 50; the schedule's horizon (67) comes from the broadcast at step 25, and the cap (200) is never reached.
ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps",
        "4", "--model.config.dropout", "0.1", "--trainer.max_steps", "200", "--time_budget", "70",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "8", "--model.compile", "true",
        "--model.optimizer.name", "adamw", "--model.optimizer.compile", "true", "--model.sample_prompts", "[]",
        "--trainer.callbacks+=step_clock.StepClock", "--trainer.callbacks.seconds_per_step", "1",
        "--torch_threads", "1"]
STOP = 50


def _fit(args: list[str], root: Path):
    root.mkdir(exist_ok=True)
    return run_cli(args, cwd=root, env=faults_env(), timeout=900)


@pytest.mark.slow
def test_a_budget_stopped_compiled_ddp_run_resumed_after_sigkill_is_bitwise_the_uninterrupted_run(tmp_path, cache):
    args = [*ARGS, "--data.cache_dir", str(cache)]
    whole = _fit(args, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert re.search(rf"Time budget: stopping after step {STOP} ", whole.stdout), whole.stdout[-2000:]

    killed = _fit([*args, *signal_at(33)], tmp_path / "killed")  # last.ckpt holds step 30: between broadcasts
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert checkpoint_step(tmp_path / "killed" / DEBUG_CKPTS / "last.ckpt") == 30
    resumed = _fit([*args, "--ckpt_path", "last"], tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert_same_training_state(tmp_path / "whole" / DEBUG_CKPTS / "last.ckpt",
                               tmp_path / "killed" / DEBUG_CKPTS / "last.ckpt")
    assert checkpoint_step(tmp_path / "killed" / DEBUG_CKPTS / "last.ckpt") == STOP
    assert_same_logs(tmp_path / "whole" / "runs", tmp_path / "killed" / "runs", ("train/loss", "val/loss", "lr"))
