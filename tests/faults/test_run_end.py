"""A run that ends normally (by max_steps, by epochs, by a time budget) validates at its last step, and its
last.ckpt holds that step: what `predict`, `export` and `init_from` use is what was trained, and the end-of-fit
summary's "last checkpoint" is true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli, scalars
from fault_helpers import checkpoint_step
from llm_lit.data.tokens import BUNDLED_CORPUS

FIT = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1"]


def _finished_at(stdout: str) -> int:
    return int(re.search(r"fit finished at step (\d+)", stdout).group(1))


def _assert_validated_and_saved_at(root: Path, run: str, step: int, stdout: str) -> None:
    folder = root / "runs" / run / "version_0"
    assert checkpoint_step(folder / "checkpoints" / "last.ckpt") == step
    assert scalars(folder, "val/loss")[-1][0] == step - 1  # logged at the logger step of global step `step`
    assert f" at step {step}\n" in stdout.split("fit finished")[1]  # the summary's "last val/loss ... at step N"


@pytest.mark.parametrize("steps", [13, pytest.param(43, marks=pytest.mark.slow)])
def test_a_run_ending_by_max_steps_validates_and_saves_its_last_step(tmp_path, steps):
    # debug.yaml validates every 10 steps and saves last.ckpt every 5: steps 13 and 43 fall between them
    result = run_cli([*FIT, "--trainer.max_steps", str(steps)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _finished_at(result.stdout) == steps
    _assert_validated_and_saved_at(tmp_path, "debug", steps, result.stdout)


def test_a_run_ending_by_epochs_validates_and_saves_its_last_step(tmp_path):
    (tmp_path / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    result = run_cli([*FIT, "--data.train_files", '["small.txt"]', "--data.vocab_size", "270",
                      "--trainer.max_epochs", "1", "--trainer.max_steps", "-1", "--data.batch_size", "12", "--trainer.val_check_interval", "1000"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = _finished_at(result.stdout)
    assert steps % 5 and steps < 1000  # the last step is no checkpoint step and no validation step
    _assert_validated_and_saved_at(tmp_path, "debug-small", steps, result.stdout)


@pytest.mark.slow
def test_a_run_ending_by_its_time_budget_validates_and_saves_its_last_step(tmp_path):
    result = run_cli([*FIT, "--trainer.max_steps", "100000", "--time_budget", "40", "--trainer.val_check_interval",
                      "10000"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = int(result.stdout.split("Time budget: stopping after step ")[1].split()[0])
    assert _finished_at(result.stdout) == steps
    _assert_validated_and_saved_at(tmp_path, "debug", steps, result.stdout)


@pytest.mark.slow
def test_a_killed_and_resumed_run_ends_with_the_same_last_checkpoint_as_an_uninterrupted_one(tmp_path):
    from fault_helpers import assert_same_training_state, faults_env, signal_at

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    args = [*FIT, "--trainer.max_steps", "13"]
    assert run_cli(args, cwd=tmp_path / "a").returncode == 0
    killed = run_cli([*args, *signal_at(8)], cwd=tmp_path / "b", env=faults_env())
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_cli([*args, "--ckpt_path", "last"], cwd=tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(tmp_path / "a" / DEBUG_CKPTS / "last.ckpt", tmp_path / "b" / DEBUG_CKPTS / "last.ckpt")
    assert checkpoint_step(tmp_path / "b" / DEBUG_CKPTS / "last.ckpt") == 13


@pytest.mark.slow
def test_a_kill_before_the_last_steps_validation_resumes_to_the_same_run(tmp_path):
    # debug.yaml's last step (30) is a validation step and a checkpoint step: a SIGKILL between the step's periodic
    # checkpoint and its validation must not leave a last.ckpt from which a resume has nothing left to do
    from fault_helpers import faults_env, signal_at
    from kill_sweep import compare_checkpoints, compare_logs

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert run_cli(FIT, cwd=tmp_path / "a").returncode == 0
    killed = run_cli([*FIT, *signal_at(30, hook="validation_start")], cwd=tmp_path / "b", env=faults_env())
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run_cli([*FIT, "--ckpt_path", "last"], cwd=tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert compare_checkpoints(tmp_path / "a" / DEBUG_CKPTS, tmp_path / "b" / DEBUG_CKPTS) == []
    assert compare_logs(tmp_path / "a" / "runs", tmp_path / "b" / "runs") == []


def test_a_sigterm_during_the_last_step_still_saves_it(tmp_path):
    # the last step's `last` file waits for the end of training; an interrupt checkpoint taken meanwhile is still
    # written where --ckpt_path last looks
    from fault_helpers import faults_env, signal_at

    stopped = run_cli([*FIT, *signal_at(29, signal_name="SIGTERM")], cwd=tmp_path, env=faults_env())
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    assert "continue with --ckpt_path last" in stopped.stdout
    assert checkpoint_step(tmp_path / DEBUG_CKPTS / "last.ckpt") == 30
    assert (tmp_path / DEBUG_CKPTS / "best-step30.ckpt").is_file()  # its validation ran before it stopped
