"""Exact resume with Muon: `llm_lit fit` on debug.yaml with `model.optimizer.name muon` and the wsd schedule,
killed (SIGKILL) after a checkpoint and resumed with `--ckpt_path last`, ends bitwise equal to an
uninterrupted run: weights, Muon's momentum buffers and its AdamW moments, schedule, counters and every
logged value. Dropout is on, as in test_kill_and_resume.py."""

from __future__ import annotations

import signal

import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from fault_helpers import assert_same_logs, assert_same_training_state, run_and_interrupt

# One thread: bfloat16 matmuls of Muon's tiny matrices run several times slower on two threads of a busy CPU.
ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
        "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1", "--model.optimizer.name", "muon",
        "--model.optimizer.schedule", "wsd", "--model.optimizer.wsd.decay_fraction", "0.5", "--torch_threads", "1"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")
LAST = DEBUG_CKPTS / "last.ckpt"


def test_sigkill_with_muon_then_resume_is_exact(reference, cache, tmp_path):
    root = tmp_path
    args = [*ARGS, "--data.cache_dir", str(cache)]
    stopped = run_and_interrupt(args, root, root / LAST, signal.SIGKILL, after_step=5)
    assert stopped.returncode == -signal.SIGKILL
    resumed = run_cli([*args, "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(reference / LAST, root / LAST)
    assert_same_training_state(reference / DEBUG_CKPTS / "best-step20.ckpt", root / DEBUG_CKPTS / "best-step20.ckpt")
    assert_same_logs(reference / "runs", root / "runs", TAGS, expect_steps=20)
    state = torch.load(root / LAST, map_location="cpu", weights_only=True)["optimizer_states"][0]
    assert state["param_groups"][-1]["muon"] and any("momentum_buffer" in s for s in state["state"].values())
