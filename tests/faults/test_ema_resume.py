"""Exact resume with the weight average: `llm_lit fit` on debug.yaml with `model.ema` on (and dropout),
killed (SIGKILL) after a checkpoint and resumed with `--ckpt_path last`, ends bitwise equal to an
uninterrupted run: the average (the checkpoint's weights), the training weights and running sum kept
beside it, optimizer, schedule, counters and every logged value."""

from __future__ import annotations

import signal

import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from fault_helpers import assert_same_logs, assert_same_training_state, run_and_interrupt
from llm_lit.ema import EMA_KEY

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
        "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1", "--torch_threads", "1",
        "--model.ema.enabled", "true", "--model.ema.decay", "0.8"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")
LAST = DEBUG_CKPTS / "last.ckpt"


def test_sigkill_with_ema_then_resume_is_exact(reference, cache, tmp_path):
    root = tmp_path
    args = [*ARGS, "--data.cache_dir", str(cache)]
    stopped = run_and_interrupt(args, root, root / LAST, signal.SIGKILL, after_step=5)
    assert stopped.returncode == -signal.SIGKILL
    resumed = run_cli([*args, "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(reference / LAST, root / LAST)
    a = torch.load(reference / LAST, map_location="cpu", weights_only=True)[EMA_KEY]
    b = torch.load(root / LAST, map_location="cpu", weights_only=True)[EMA_KEY]
    assert a["steps"] == b["steps"] == 20
    for x, y in zip(a["sums"] + a["training_weights"], b["sums"] + b["training_weights"]):
        assert torch.equal(x, y)
    assert_same_logs(reference / "runs", root / "runs", TAGS, expect_steps=20)
