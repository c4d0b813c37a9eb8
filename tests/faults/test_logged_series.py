"""Every tag a training step logs (train/loss, lr, grad_norm, perf/tokens_per_s, epoch) is on disk before any
checkpoint of that step is written, so a SIGKILL right after a checkpoint loses none of them: the resumed run
starts after that step and would never write them again."""

from __future__ import annotations

import signal

import pytest

from cli_helpers import DEBUG_CONFIG, run_cli
from fault_helpers import faults_env, logged

TAGS = ("train/loss", "lr", "grad_norm", "perf/tokens_per_s", "epoch")


def test_each_checkpoint_finds_every_tag_of_its_steps_already_on_disk(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from llm_lit.data import TextDataModule
    from llm_lit.data.tokens import BUNDLED_CORPUS
    from llm_lit.model import ModelConfig
    from llm_lit.run.checkpoint_io import AtomicCheckpointIO
    from llm_lit.training.module import LanguageModel, OptimizerConfig

    on_disk: dict[int, dict[str, set[int]]] = {}

    class LogsAtSave(AtomicCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            on_disk[checkpoint["global_step"]] = {tag: set(logged(tmp_path / "logs", tag)) for tag in TAGS}
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
    for step in range(1, 6):  # (step 6's checkpoint is the run's end, after Lightning's own writes)
        assert on_disk[step] == {tag: set(range(step)) for tag in TAGS}, step
    for tag in TAGS:
        assert all(len(v) == 1 for v in logged(tmp_path / "logs", tag).values()), tag  # each step written once


def test_a_sigkill_right_after_a_checkpoint_loses_no_tag_of_its_step(tmp_path):
    # checkpoints every 5 steps, logs every 5 (logger steps 4, 9, 14): killed the moment the checkpoint of step 15
    # is on disk, whose log line (logger step 14) must then hold every tag
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1",
            "--trainer.plugins", "self_kill.KillAfterSave", "--trainer.plugins.step", "15"]
    stopped = run_cli(args, cwd=tmp_path, env=faults_env())
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
    for tag in TAGS:
        assert sorted(logged(tmp_path / "runs", tag)) == [4, 9, 14], tag


@pytest.mark.slow
def test_a_run_of_steps_resumed_from_its_end_logs_the_epoch_it_is_in(tmp_path):
    # Lightning counts the epoch a stopped run ends in as completed; the resumed run's batches are still in it
    common = ["--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1",
              "--trainer.log_every_n_steps", "5", "--trainer.val_check_interval", "10"]
    first = run_cli(["fit", *common, "--trainer.max_steps", "10"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_cli(["fit", *common, "--trainer.max_steps", "20", "--ckpt_path", "last"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = logged(tmp_path / "runs", "epoch")
    assert {4, 9, 14, 19} <= set(epochs) and all(set(values) == {0.0} for values in epochs.values()), epochs
