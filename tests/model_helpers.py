"""A tiny transformer's settings and inputs, and the check that a few AdamW steps teach it something."""

from __future__ import annotations

import math

import pytest
import torch

#: A transformer small enough to build and train in milliseconds.
TINY = dict(vocab_size=61, context_length=16, d_model=32, n_layers=2, n_heads=4)


def random_ids(batch: int = 2, seq: int = 12, seed: int = 1) -> torch.Tensor:
    """Token ids `(batch, seq)` drawn uniformly below TINY's vocab size, the same for the same seed."""
    return torch.randint(0, TINY["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))


def assert_learns(model: torch.nn.Module) -> None:
    """A model of TINY's vocab starts near the uniform loss and lowers it by 0.5 nat in 15 AdamW steps on
    one batch `(4, 15)` (measured in eval mode, so dropout does not blur it)."""
    from llm_lit.optim import AdamW, param_groups

    optimizer = AdamW(param_groups(model, 0.1), lr=3e-3)
    ids = random_ids(4, 16)
    x, y = ids[:, :-1], ids[:, 1:]
    first = model.loss(x, y).item()
    assert first == pytest.approx(math.log(TINY["vocab_size"]), rel=0.05)  # near-uniform at init
    for _ in range(15):
        optimizer.zero_grad()
        model.loss(x, y).backward()
        optimizer.step()
    model.eval()
    assert model.loss(x, y).item() < first - 0.5
