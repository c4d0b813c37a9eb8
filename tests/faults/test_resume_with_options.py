"""Exact resume with the options that keep state of their own: `llm_lit fit` on debug.yaml (dropout on, as in
test_kill_and_resume.py), killed (SIGKILL) after a checkpoint and resumed with `--ckpt_path last`, ends bitwise
equal to an uninterrupted run: weights, optimizer, schedule, counters, every logged value, and

* `ema`: the weight average (the checkpoint's weights), with the training weights and running sum kept beside it;
* `muon`: Muon's momentum buffers and its AdamW moments, under the wsd schedule.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, finished_run
from fault_helpers import LAST, assert_same_logs, assert_same_training_state, interrupt_and_resume
from llm_lit.training.ema import EMA_KEY

# One thread: bfloat16 matmuls of Muon's tiny matrices run several times slower on two threads of a busy CPU.
ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
        "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1", "--torch_threads", "1"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")


def _same_average(reference: Path, root: Path) -> None:
    a = torch.load(reference / LAST, map_location="cpu", weights_only=True)[EMA_KEY]
    b = torch.load(root / LAST, map_location="cpu", weights_only=True)[EMA_KEY]
    assert a["steps"] == b["steps"] == 20
    for x, y in zip(a["sums"] + a["training_weights"], b["sums"] + b["training_weights"]):
        assert torch.equal(x, y)


def _same_muon_state(reference: Path, root: Path) -> None:
    best = DEBUG_CKPTS / "best-step20.ckpt"
    assert_same_training_state(reference / best, root / best)
    state = torch.load(root / LAST, map_location="cpu", weights_only=True)["optimizer_states"][0]
    assert state["param_groups"][-1]["muon"] and any("momentum_buffer" in s for s in state["state"].values())


#: option -> (its flags, what else must be equal after the resume)
OPTIONS = {
    "ema": (["--model.ema.enabled", "true", "--model.ema.decay", "0.8"], _same_average),
    "power-ema": (["--model.ema.enabled", "true", "--model.ema.gamma", "3"], _same_average),
    "muon": (["--model.optimizer.name", "muon", "--model.optimizer.schedule", "wsd",
              "--model.optimizer.wsd.decay_fraction", "0.5"], _same_muon_state),
}


@pytest.fixture(scope="module", params=["muon", pytest.param("ema", marks=pytest.mark.slow),
                                        pytest.param("power-ema", marks=pytest.mark.slow)])
def option(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def option_reference(option, cache, tmp_path_factory) -> Path:
    """One uninterrupted run per option (the conftest's `reference` runs ARGS alone)."""
    return finished_run([*ARGS, *OPTIONS[option][0], "--data.cache_dir", str(cache)],
                             tmp_path_factory.mktemp(f"{option}-uninterrupted"))


def test_sigkill_then_resume_is_exact(option, option_reference, cache, tmp_path):
    flags, same_state_of_its_own = OPTIONS[option]
    interrupt_and_resume([*ARGS, *flags, "--data.cache_dir", str(cache)], tmp_path, signal.SIGKILL, after_step=5)
    assert_same_training_state(option_reference / LAST, tmp_path / LAST)
    same_state_of_its_own(option_reference, tmp_path)
    assert_same_logs(option_reference / "runs", tmp_path / "runs", TAGS, expect_steps=20)
