"""Exact resume: `llm_lit fit` on debug.yaml killed (SIGKILL) or stopped (SIGTERM, Ctrl-C) after a
checkpoint, then resumed with `--ckpt_path last`, ends bitwise equal to an uninterrupted run:
weights, optimizer state, schedule, step counters, data position, the best checkpoint, and the whole
logged series of every metric.

Dropout is on (0.1) so that the randomness of training is part of what must be restored. Losses are
logged every 4 steps and checkpoints written every 5, so most stops fall between logging steps,
where the train loss's running mean holds steps not logged yet. Most runs stop themselves at an
exact point (`self_kill.SignalAt`); the Ctrl-C / SIGTERM tests also send the signal from outside. A
SIGKILL test also trains on a weighted mixture of three sources (Parquet, JSONL.zst and text), whose
training windows and per-source validation figures must resume as exactly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, finished_run, run_cli
from fault_helpers import (LAST, assert_same_logs, assert_same_training_state, checkpoint_step, faults_env,
                           interrupt_and_resume, resume_last, signal_at)
from format_helpers import write_mixture
from llm_lit.data.tokens import BUNDLED_CORPUS

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "4", "--model.config.dropout", "0.1"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")
MIXTURE_TAGS = (*TAGS, *(f"val/{name}/{m}" for name in ("web", "code", "books") for m in ("loss", "bpb")))


@pytest.fixture(scope="module")
def mixture_args(tmp_path_factory) -> list[str]:
    """ARGS training on a 3-source mixture (weights 0.6 / 0.3 / 0.1; `format_helpers.write_mixture`)."""
    config = write_mixture(tmp_path_factory.mktemp("mixture"), BUNDLED_CORPUS.read_text(encoding="utf-8"))
    return [*ARGS, "--config", str(config)]


@pytest.fixture(scope="module")
def mixture_reference(tmp_path_factory, mixture_args, cache) -> Path:
    """The folder of one uninterrupted run of `mixture_args`."""
    return finished_run([*mixture_args, "--data.cache_dir", str(cache)], tmp_path_factory.mktemp("mixture-run"))


def _stop_at(root: Path, cache: Path, step: int, hook: str, signal_name: str, args: list[str] = ARGS):
    """Run `args` until it signals itself (`self_kill.SignalAt`) at `hook` of global step `step`."""
    return run_cli([*args, "--data.cache_dir", str(cache), *signal_at(step, hook, signal_name)], cwd=root,
                   env=faults_env())


def _assert_same_run(reference: Path, root: Path, tags: tuple[str, ...] = TAGS) -> None:
    assert_same_training_state(reference / LAST, root / LAST)
    best = [p.relative_to(reference) for p in (reference / DEBUG_CKPTS).glob("best-step*.ckpt")]
    assert len(best) == 1 and [p.relative_to(root) for p in (root / DEBUG_CKPTS).glob("best-step*.ckpt")] == best
    assert_same_training_state(reference / best[0], root / best[0])
    assert_same_logs(reference / "runs", root / "runs", tags, expect_steps=7)  # logger steps 3, 7, ..., 27
    assert not list((root / DEBUG_CKPTS).glob(".*.tmp"))


@pytest.mark.parametrize("step, hook, data", [(5, "train_batch_start", "one corpus"),
                                              pytest.param(20, "train_batch_start", "one corpus",
                                                           marks=pytest.mark.slow),
                                              pytest.param(10, "validation_start", "one corpus",
                                                           marks=pytest.mark.slow),
                                              pytest.param(5, "train_batch_start", "mixture", marks=pytest.mark.slow)],
                         ids=["off-a-logging-step", "on-a-logging-step", "before-its-validation", "mixture"])
def test_sigkill_after_a_checkpoint_then_resume_is_exact(request, cache, tmp_path, step, hook, data):
    # step 5: the running mean of the train loss holds step 5's loss, not logged yet (logged at 4, 8, ...);
    # step 20: a logging step, nothing pending; step 10: killed after the step's checkpoint, before its
    # validation, which the resumed run must run (val/loss at step 10 and best-step10.ckpt).
    if data == "mixture":
        args, reference, tags = request.getfixturevalue("mixture_args"), request.getfixturevalue(
            "mixture_reference"), MIXTURE_TAGS
    else:
        args, reference, tags = ARGS, request.getfixturevalue("reference"), TAGS
    stopped = _stop_at(tmp_path, cache, step, hook, "SIGKILL", args)
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    resume_last([*args, "--data.cache_dir", str(cache)], tmp_path)
    _assert_same_run(reference, tmp_path, tags)


def test_sigkill_after_the_first_checkpoint_then_resume_is_exact(reference, cache, tmp_path):
    # killed from outside, at whatever point after the first checkpoint the signal lands
    interrupt_and_resume([*ARGS, "--data.cache_dir", str(cache)], tmp_path, signal.SIGKILL, after_step=5)
    _assert_same_run(reference, tmp_path)


@pytest.mark.parametrize("signal_name", [pytest.param(name, marks=pytest.mark.slow) for name in ("SIGTERM", "SIGINT")])
def test_sigterm_or_ctrl_c_between_logging_steps_resumes_exactly(reference, cache, tmp_path, signal_name):
    # signalled during step 6: the run finishes it and saves at step 7, between the logging steps 4 and 8
    stopped = _stop_at(tmp_path, cache, 6, "train_batch_start", signal_name)
    assert stopped.returncode == 128 + signal.Signals[signal_name], stopped.stderr[-3000:]
    assert "Stopped at step 7; saved" in stopped.stdout
    resume_last([*ARGS, "--data.cache_dir", str(cache)], tmp_path)
    _assert_same_run(reference, tmp_path)


def test_a_second_ctrl_c_aborts_at_once_with_exit_code_130(cache, tmp_path):
    stopped = run_cli([*ARGS, "--data.cache_dir", str(cache), *signal_at(6, "train_batch_start", "SIGINT", repeat=2)],
                      cwd=tmp_path, env=faults_env())
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1].startswith("Aborted by a second Ctrl-C; no checkpoint written")
    assert checkpoint_step(tmp_path / LAST) == 5  # the last regular checkpoint, untouched


# the deterministic tests above cover what must be restored; these add the signal sent from outside to the group
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_that_resumes_exactly(reference, cache, tmp_path, signum):
    # sent from outside after step 10: the interrupt lands around the first validation, the hardest place
    interrupt_and_resume([*ARGS, "--data.cache_dir", str(cache)], tmp_path, signum, after_step=10)
    _assert_same_run(reference, tmp_path)
