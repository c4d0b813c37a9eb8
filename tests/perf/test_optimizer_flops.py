"""FLOPs of the optimizer and of model.ema: Muon's Newton–Schulz matmuls against torch's FLOP counter,
`llm_lit accounting`'s figures, and the MFU logger's perf/hfu."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

import llm_lit.commands.accounting as acc
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.training.module import LanguageModel
from llm_lit.optim.muon import muon_matrices
from llm_lit.optim import MuonSettings, OptimizerConfig, build_optimizer
from llm_lit.optim.muon import newton_schulz_flops, orthogonalise

SHAKESPEARE = ModelConfig(vocab_size=1024, context_length=128, d_model=128, n_layers=4, n_heads=4)


@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (32, 32), (7, 5)])
@pytest.mark.parametrize("steps", [1, 5])
def test_newton_schulz_flops_match_the_counter(shape: tuple[int, int], steps: int) -> None:
    update = torch.randn(*shape)
    with FlopCounterMode(display=False) as counter:
        orthogonalise(update, steps, torch.float32)
    assert newton_schulz_flops(*shape, steps) == counter.get_total_flops()


def test_muon_flops_per_step_and_accounting_agree() -> None:
    model = TransformerLM(SHAKESPEARE)
    config = OptimizerConfig(name="muon", muon=MuonSettings(ns_steps=3))
    optimizer, _ = build_optimizer(config, model, 100, hidden_matrices=muon_matrices(model))
    expected = sum(newton_schulz_flops(*p.shape, 3) for p in muon_matrices(model))
    assert optimizer.flops_per_step() == expected == acc.optimizer_flops_per_step(SHAKESPEARE, config)
    # ... and it is the whole matmul work of a step (the AdamW part and the momentum are elementwise)
    ids = torch.randint(0, 1024, (2, 16))
    model.loss(ids, ids).backward()
    with FlopCounterMode(display=False) as counter:
        optimizer.step()
    assert counter.get_total_flops() == expected
    assert acc.optimizer_flops_per_step(SHAKESPEARE, OptimizerConfig()) == 0
    assert acc.optimizer_flops_per_step(SHAKESPEARE, OptimizerConfig(name="sgd")) == 0


def test_accounting_reports_optimizer_flops_and_the_ema(capsys) -> None:
    result = acc.accounting(model=SHAKESPEARE, optimizer=OptimizerConfig(name="muon"), ema=True)
    out = capsys.readouterr().out
    assert result["optimizer_flops_per_step"] == acc.optimizer_flops_per_step(SHAKESPEARE, OptimizerConfig(name="muon"))
    assert "optimizer FLOPs:" in out and "Muon's Newton-Schulz" in out and "ema average" in out
    plain = acc.estimate_memory(SHAKESPEARE, 16, optimizer=OptimizerConfig(name="muon"))
    with_ema = result["memory"]
    assert with_ema.ema == 4 * acc.count_parameters(SHAKESPEARE)
    assert with_ema.total == plain.total + with_ema.ema
    acc.accounting(model=SHAKESPEARE)
    assert "adamw: elementwise updates only" in capsys.readouterr().out


def test_the_logger_adds_the_optimizer_flops_to_hfu(monkeypatch) -> None:
    monkeypatch.setattr("llm_lit.training.callbacks.device_peak_flops", lambda device, precision: 1e12)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=1, n_heads=2)
    module = LanguageModel(config, optimizer=OptimizerConfig(name="muon", warmup_steps=1), sample_prompts=[])
    batches = [(torch.randint(0, 64, (4, 16)), torch.randint(0, 64, (4, 16))) for _ in range(4)]
    trainer = L.Trainer(max_steps=4, log_every_n_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    metrics = trainer.callback_metrics
    model_flops = module.model.flops_per_token(16)
    optimizer_flops = trainer.optimizers[0].flops_per_step() / 64  # per token of a 4 x 16 step
    assert float(metrics["perf/hfu"]) / float(metrics["perf/mfu"]) == pytest.approx(
        (model_flops + optimizer_flops) / model_flops, rel=1e-5)
