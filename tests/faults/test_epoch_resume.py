"""Exact resume in the middle of an epoch: `llm_lit fit --trainer.max_epochs 2` over strided windows (with the
from-scratch SGD, Nesterov momentum and the inverse-time decay), killed with SIGKILL in its second epoch and
resumed with `--ckpt_path last`, ends bitwise equal to an uninterrupted run: weights, SGD's momentum buffers,
schedule, counters, data position and every logged value. Dropout is on, as in test_kill_and_resume.py."""

from __future__ import annotations

import signal

import pytest
import torch

from cli_helpers import DEBUG_CONFIG
from fault_helpers import LAST, assert_same_logs, assert_same_training_state, interrupt_and_resume

# stride 64 > context 32: every other window's worth of tokens is skipped; 45 micro-batches per epoch
ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "-1",
        "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1",
        "--data.batch_size", "256", "--data.stride", "64", "--model.optimizer.name", "sgd", "--model.optimizer.lr", "0.3",
        "--model.optimizer.min_lr", "0.01", "--model.optimizer.sgd.nesterov", "true",
        "--model.optimizer.schedule", "inverse_time", "--model.optimizer.inverse_time.decay", "0.05",
        "--model.sample_prompts", "[]", "--torch_threads", "1"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(reference, cache, tmp_path):
    args = [*ARGS, "--data.cache_dir", str(cache)]
    full = torch.load(reference / LAST, map_location="cpu", weights_only=True)
    steps_per_epoch = full["global_step"] // 2
    # the last checkpoint is written when the run ends, after both epochs (Lightning's epoch counter reads 2)
    assert full["epoch"] == 2 and full["global_step"] == 2 * steps_per_epoch and steps_per_epoch > 20
    killed_at = {}
    interrupt_and_resume(args, tmp_path, signal.SIGKILL, after_step=steps_per_epoch + 5, before_resuming=killed_at.update)
    assert killed_at["epoch"] == 1 and killed_at["global_step"] % steps_per_epoch != 0  # in the middle of epoch 2
    assert_same_training_state(reference / LAST, tmp_path / LAST)
    # as documented for every resume: at worst a value logged at the checkpointed step itself (its validation) is lost
    assert_same_logs(reference / "runs", tmp_path / "runs", TAGS, expect_steps=2 * steps_per_epoch,
                     may_lack=(killed_at["global_step"] - 1,))
    state = torch.load(tmp_path / LAST, map_location="cpu", weights_only=True)["optimizer_states"][0]
    assert any("momentum_buffer" in s for s in state["state"].values())
