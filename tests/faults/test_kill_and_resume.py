"""Exact resume: `llm_lit fit` on debug.yaml killed (SIGKILL) or stopped (SIGTERM, Ctrl-C) after a
checkpoint, then resumed with `--ckpt_path last`, ends bitwise equal to an uninterrupted run:
weights, optimizer state, schedule, step counters, data position and every logged loss.

Dropout is on (0.1) so that the randomness of training is part of what must be restored."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from fault_helpers import assert_same_logs, assert_same_training_state, run_and_interrupt

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1"]
TAGS = ("train/loss", "lr", "grad_norm", "val/loss")
LAST = DEBUG_CKPTS / "last.ckpt"


def _interrupt_then_resume(root: Path, cache: Path, signum: int, after_step: int) -> tuple:
    args = [*ARGS, "--data.cache_dir", str(cache)]
    stopped = run_and_interrupt(args, root, root / LAST, signum, after_step=after_step)
    resumed = run_cli([*args, "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return stopped, resumed


def test_sigkill_after_the_first_checkpoint_then_resume_is_exact(reference, cache, tmp_path):
    stopped, _ = _interrupt_then_resume(tmp_path, cache, signal.SIGKILL, after_step=5)
    assert stopped.returncode == -signal.SIGKILL
    assert_same_training_state(reference / LAST, tmp_path / LAST)
    assert_same_training_state(reference / DEBUG_CKPTS / "best-step30.ckpt", tmp_path / DEBUG_CKPTS / "best-step30.ckpt")
    assert_same_logs(reference / "runs", tmp_path / "runs", TAGS, expect_steps=30)
    assert not list((tmp_path / DEBUG_CKPTS).glob(".*.tmp"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_that_resumes_exactly(reference, cache, tmp_path, signum):
    # after step 10: the interrupt lands around the first validation, the hardest place to resume from
    stopped, _ = _interrupt_then_resume(tmp_path, cache, signum, after_step=10)
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert "continue with --ckpt_path last" in stopped.stdout
    assert "Traceback" not in stopped.stderr
    assert_same_training_state(reference / LAST, tmp_path / LAST)
    assert_same_logs(reference / "runs", tmp_path / "runs", TAGS, expect_steps=30)

def test_each_checkpoint_finds_its_steps_train_logs_already_on_disk(tmp_path):
    """A SIGKILL just after any checkpoint loses no log line: when a checkpoint of step g is written, the
    event files already hold train/loss, lr and grad_norm of every step up to it (logger steps 0..g-1)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from fault_helpers import logged
    from llm_lit.data import TextDataModule
    from llm_lit.data.tokens import BUNDLED_CORPUS
    from llm_lit.model import ModelConfig
    from llm_lit.module import LanguageModel, OptimizerConfig
    from llm_lit.resume import AtomicCheckpointIO

    on_disk: dict[int, dict[str, set[int]]] = {}

    class LogsAtSave(AtomicCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            on_disk[checkpoint["global_step"]] = {tag: set(logged(tmp_path / "logs", tag)) for tag in TAGS[:3]}
            super().save_checkpoint(checkpoint, path, storage_options)

    (tmp_path / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    data = TextDataModule(train_files=[str(tmp_path / "small.txt")], vocab_size=270, context_length=16, batch_size=8,
                          cache_dir=str(tmp_path / "cache"))
    module = LanguageModel(ModelConfig(vocab_size=270, context_length=16, d_model=32, n_layers=1, n_heads=2),
                           optimizer=OptimizerConfig(warmup_steps=1), sample_prompts=[])
    trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=TensorBoardLogger(tmp_path / "logs"),
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        log_every_n_steps=1, plugins=[LogsAtSave()],
                        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=0,
                                                   save_last=True)])
    trainer.fit(module, datamodule=data)
    assert sorted(on_disk) == list(range(1, 7))
    for step, tags in on_disk.items():
        assert tags == {tag: set(range(step)) for tag in TAGS[:3]}, step
    final = {tag: set(logged(tmp_path / "logs", tag)) for tag in TAGS[:3]}
    assert final == {tag: set(range(6)) for tag in TAGS[:3]}
    assert all(len(v) == 1 for v in logged(tmp_path / "logs", "train/loss").values())  # each step written once
