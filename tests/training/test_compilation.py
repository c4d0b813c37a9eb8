"""torch.compile where it can run; on a machine without a compiler, eager with one line saying so."""

from __future__ import annotations

import logging

import torch

from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.optim import OptimizerConfig
from llm_lit.optim.compiled_update import compile_failure
from llm_lit.training import compilation
from llm_lit.training.reporting import say_once

TINY = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4)


def test_this_machine_compiles() -> None:
    assert compile_failure("cpu") is None


def test_without_a_compiler_the_model_and_optimizer_run_eagerly_and_say_so(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(compilation, "compile_failure", lambda device_type: "no C++ compiler found")
    say_once.cache_clear()
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**TINY))
    eager_loss = model.loss
    compilation.compile_model(model, "cpu")
    assert model.loss == eager_loss and model._compiled_call_impl is None  # nothing compiled
    config = compilation.runnable_optimizer(OptimizerConfig(name="adamw", compile=True), "cpu")
    assert config.compile is False and config.name == "adamw"
    lines = [line for line in caplog.messages if "torch.compile cannot run here" in line]
    assert len(lines) == 2 and "no C++ compiler found" in lines[0]
    assert "the model trains eagerly" in lines[0] and "the optimizer updates eagerly" in lines[1]
    ids = torch.randint(0, 61, (2, 9))
    assert torch.isfinite(model.loss(ids[:, :-1], ids[:, 1:]))


def test_where_it_compiles_the_optimizer_setting_stands() -> None:
    config = OptimizerConfig(name="adamw", compile=True)
    assert compilation.runnable_optimizer(config, "cpu") is config
