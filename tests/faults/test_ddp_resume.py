"""Exact resume with two DDP processes on CPU (gloo), on a corpus of two files: SIGKILL or SIGTERM to the
whole process group after a checkpoint, then `--ckpt_path last`, ends bitwise equal to an uninterrupted
two-process run, logs included (losses are logged every 4 steps, so the stop usually falls between
logging steps and each rank's running mean of the train loss must be restored)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CONFIG, finished_run
from fault_helpers import LAST, assert_same_logs, assert_same_training_state, interrupt_and_resume
from llm_lit.data.tokens import BUNDLED_CORPUS

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "4", "--model.config.dropout", "0.1", "--trainer.max_steps", "20",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "8",
        "--model.sample_prompts", "[]"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """The bundled corpus as two files: training windows span the file boundary."""
    folder = tmp_path_factory.mktemp("corpus")
    data = BUNDLED_CORPUS.read_bytes()
    (folder / "a.txt").write_bytes(data[:600_000])
    (folder / "b.txt").write_bytes(data[600_000:])
    # --run_name debug: the run's folder is DEBUG_RUN (a corpus of its own would otherwise name it debug-a+1)
    return ["--data.train_files", f"[{folder / 'a.txt'},{folder / 'b.txt'}]", "--run_name", "debug"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache, corpus) -> Path:
    """One uninterrupted two-process run on the two-file corpus (overrides the conftest's, which runs ARGS alone)."""
    return finished_run([*ARGS, *corpus, "--data.cache_dir", str(cache)], tmp_path_factory.mktemp("ddp_uninterrupted"))


# SIGTERM is the DDP-specific path (all ranks agree on the stopping step) and runs by default; SIGKILL
# adds nothing DDP-specific beyond the single-process test, so it runs with -m slow.
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGKILL, marks=pytest.mark.slow),
                                    pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["SIGKILL", "SIGTERM"])
def test_ddp_interrupt_then_resume_is_exact(reference, cache, corpus, tmp_path, signum):
    args = [*ARGS, *corpus, "--data.cache_dir", str(cache)]
    interrupt_and_resume(args, tmp_path, signum, after_step=5)
    assert_same_training_state(reference / LAST, tmp_path / LAST)
    assert_same_logs(reference / "runs", tmp_path / "runs", ("train/loss", "val/loss"),
                     expect_steps=5)  # logger steps 3, 7, 11, 15, 19
