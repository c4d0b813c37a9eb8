"""Samples and hyperparameters reach every logger (TensorBoard, CSV, W&B through a fake `wandb` module),
and choosing W&B without it installed is one line naming the extra."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from llm_lit.commands.cli import main
from llm_lit.data import TextDataModule
from llm_lit.generation.sampling import SamplingConfig
from llm_lit.model import ModelConfig
from llm_lit.training.module import LanguageModel
from llm_lit.optim import OptimizerConfig
from llm_lit.training.reporting import frame

from cli_helpers import DEBUG_CONFIG


class FakeRun:
    """What WandbLogger calls on a wandb run."""

    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.config = types.SimpleNamespace(values={}, update=lambda params, allow_val_change=False:
                                            self.config.values.update(params))

    def log(self, data: dict) -> None:
        self.logged.append(data)

    def define_metric(self, *args, **kwargs) -> None:
        pass


@pytest.fixture()
def fake_wandb(monkeypatch):
    """A `wandb` module with just what Lightning's WandbLogger touches when given a run."""
    wandb = types.ModuleType("wandb")
    wandb.Table = lambda columns=None, data=None, dataframe=None: {"columns": columns, "data": data}
    wandb.run = None
    sdk, lib, wandb_run = (types.ModuleType(n) for n in ("wandb.sdk", "wandb.sdk.lib", "wandb.wandb_run"))
    lib.RunDisabled = type("RunDisabled", (), {})
    wandb_run.Run = FakeRun
    for name, module in {"wandb": wandb, "wandb.sdk": sdk, "wandb.sdk.lib": lib, "wandb.wandb_run": wandb_run}.items():
        monkeypatch.setitem(sys.modules, name, module)
    import lightning.pytorch.loggers.wandb as lightning_wandb
    monkeypatch.setattr(lightning_wandb, "_WANDB_AVAILABLE", True)
    return lightning_wandb.WandbLogger


def test_samples_and_hyperparameters_reach_tensorboard_csv_and_wandb(tmp_path, fake_wandb, capsys):
    run = FakeRun()
    loggers = [TensorBoardLogger(tmp_path / "tb"), CSVLogger(tmp_path / "csv"), fake_wandb(experiment=run)]
    model = LanguageModel(ModelConfig(vocab_size=300, context_length=16, d_model=16, n_layers=1, n_heads=2),
                          optimizer=OptimizerConfig(warmup_steps=1), sampling=SamplingConfig(max_new_tokens=3, seed=0),
                          sample_prompts=["ROMEO:"])
    data = TextDataModule(vocab_size=300, context_length=16, batch_size=4, cache_dir=str(tmp_path / "cache"),
                          num_proc=1, eval_stride=8)
    trainer = L.Trainer(max_steps=2, val_check_interval=2, limit_val_batches=1, logger=loggers,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(model, data)
    out = capsys.readouterr().out
    assert "---- samples at step 2 " in out and "fit finished at step 2" in out
    # W&B: a samples table and the hyperparameters
    tables = [entry["samples"] for entry in run.logged if "samples" in entry]
    assert tables and tables[0]["columns"] == ["step", "prompt", "completion"] and tables[0]["data"][0][1] == "ROMEO:"
    assert run.config.values["model"]["d_model"] == 16 and run.config.values["data"]["eval_stride"] == 8
    assert run.config.values["sampling"]["max_new_tokens"] == 3
    # CSV: samples.jsonl beside metrics.csv, hyperparameters in hparams.yaml
    csv_dir = loggers[1].log_dir
    [sample] = [json.loads(line) for line in open(f"{csv_dir}/samples.jsonl")]
    assert sample["step"] == 2 and sample["prompt"] == "ROMEO:"
    assert "d_model: 16" in open(f"{csv_dir}/hparams.yaml").read()
    # TensorBoard: the text tab
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(loggers[0].log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    assert any("samples" in tag for tag in acc.Tags()["tensors"])


def test_console_frame_cuts_long_samples():
    text = frame("samples at step 5", [{"prompt": "A", "completion": "\n".join("x" * 20)}, {"prompt": "B", "completion": "!"}])
    lines = text.splitlines()
    assert lines[0].startswith("---- samples at step 5 ") and lines[-1] == "-" * 72
    assert "..." in lines and "B!" in lines and len(lines) == 1 + 8 + 1 + 1 + 1 + 1


def test_wandb_logger_without_wandb_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--trainer.logger", "lightning.pytorch.loggers.WandbLogger", "--trainer.max_steps", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and err == ["error: WandbLogger needs the 'wandb' package, which is not installed; "
                                 "pip install 'llm_lit[wandb]' (or pip install wandb), or choose another class."]


def test_a_wandb_run_keeps_its_files_and_its_config_in_the_run_version(tmp_path, monkeypatch, fake_wandb):
    from llm_lit.commands.lightning_cli import LLMLitCLI
    from llm_lit.run.folders import SaveConfigOfFit

    monkeypatch.chdir(tmp_path)
    cli = LLMLitCLI(args=["--config", str(DEBUG_CONFIG), "--trainer.logger", "lightning.pytorch.loggers.WandbLogger"],
                    run=False)
    assert cli.version == Path("runs") / "debug" / "version_0"
    assert cli.trainer.logger.save_dir == str(cli.version)  # wandb/ goes there, not into the current folder
    [saver] = [c for c in cli.trainer.callbacks if isinstance(c, SaveConfigOfFit)]
    assert saver.version == cli.version  # and config.yaml too
