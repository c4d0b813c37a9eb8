"""The Lightning-side speed options: activation checkpointing, pinned memory, compile wiring."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llm_lit.data import TextDataModule
from llm_lit.model import ModelConfig
from llm_lit.training.module import LanguageModel, OptimizerConfig

CONFIG = ModelConfig(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=2)


@pytest.mark.parametrize("enabled", [False, True])
def test_activation_checkpointing_option_reaches_the_model(enabled: bool) -> None:
    module = LanguageModel(CONFIG, activation_checkpointing=enabled, sample_prompts=[])
    module.configure_model()
    assert module.model.activation_checkpointing is enabled


def test_compile_option_compiles_forward_and_loss() -> None:
    module = LanguageModel(CONFIG, compile=True, sample_prompts=[])
    module.configure_model()
    assert "loss" in vars(module.model)  # the compiled loss shadows the method on this instance
    assert set(module.model.state_dict()) == set(LanguageModel(CONFIG, sample_prompts=[]).model.state_dict())


@pytest.mark.parametrize("device, pinned", [("cpu", False), ("cuda", True)])
def test_loaders_pin_memory_only_for_cuda(device: str, pinned: bool) -> None:
    dm = TextDataModule(vocab_size=64, context_length=16, batch_size=4)
    dm.train_tokens = dm.val_tokens = np.arange(1000, dtype=np.uint16) % 64
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0,
                                 world_size=1)
    assert dm.train_dataloader().pin_memory is pinned
    assert dm.val_dataloader().pin_memory is pinned


@pytest.mark.parametrize("accumulate", [1, 2])
def test_gradients_are_freed_right_after_each_optimizer_step(accumulate: int, tmp_path) -> None:
    import lightning as L
    from torch.utils.data import DataLoader

    from llm_lit.data import RandomWindows

    seen: list[tuple[int, bool]] = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen.append((batch_idx, all(p.grad is None for p in pl_module.parameters())))

    tokens = np.arange(2000, dtype=np.uint16) % 64
    loader = DataLoader(RandomWindows(tokens, 16, 4, seed=0), batch_size=None)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, accumulate_grad_batches=accumulate, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Probe()], default_root_dir=tmp_path)
    module = LanguageModel(CONFIG, OptimizerConfig(warmup_steps=1), sample_prompts=[])
    trainer.fit(module, train_dataloaders=loader)
    # after a micro-batch that ends an optimizer step, no gradient is left; mid-accumulation they are kept
    assert seen == [(i, (i + 1) % accumulate == 0) for i in range(2 * accumulate)]


@pytest.mark.parametrize("compiled", [False, True])
def test_optimizer_compile_option_reaches_adamw(compiled: bool) -> None:
    module = LanguageModel(CONFIG, OptimizerConfig(warmup_steps=1, compile=compiled), sample_prompts=[])
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, strategy=None)
    optimizer = module.configure_optimizers()["optimizer"]
    assert optimizer.compile is compiled
