"""A first fit, a Ctrl-C and the resume print none of the Lightning messages llm_lit silences
(`LIGHTNING_NOISE`: the litlogger tip, the pytree deprecation, "checkpoint directory not empty",
"dirpath has changed", "`weights_only` was not set"), and the fit that finds nothing to resume says so."""

from __future__ import annotations

import signal

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, assert_quiet, run_cli
from fault_helpers import run_and_interrupt


def test_fit_ctrl_c_and_resume_print_no_lightning_noise(tmp_path):
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "400",
            "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]",
            "--ckpt_path", "last"]  # as a job script that always resumes would run it
    stopped = run_and_interrupt(args, tmp_path, tmp_path / DEBUG_CKPTS / "last.ckpt", signal.SIGINT, after_step=5)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "No last.ckpt under runs/debug/version_*/checkpoints/ to resume: starting a new run." in stopped.stderr
    assert "HINT" not in stopped.stderr  # Lightning's own "no last checkpoint" warning is not needed
    assert_quiet(stopped)
    resumed = run_cli([*args[:3], "--trainer.max_steps", "12", *args[5:]], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stderr
    assert_quiet(resumed)
