"""AdamW's tiled update (flat views of at most TILE elements) equals torch.optim.AdamW exactly."""

from __future__ import annotations

import pytest
import torch

import llm_lit.optim.adamw as adamw
from llm_lit.optim import AdamW


@pytest.mark.parametrize("tile", [7, 64, 1000, 2**30])
def test_tiled_update_equals_torch_adamw(tile: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adamw, "TILE_ELEMENTS_CPU", tile)
    torch.manual_seed(0)
    shapes = [(33, 17), (5,), (300,), (2, 3, 4), (1,)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    ours_opt = AdamW(ours, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, foreach=False)
    for step in range(4):
        for a, b in zip(ours, ref):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        if step == 2:  # a parameter without a gradient is skipped, a non-contiguous gradient still works
            ours[1].grad = ref[1].grad = None
            ours[0].grad = torch.randn(17, 33).T
            ref[0].grad = ours[0].grad.clone()
        ours_opt.step()
        ref_opt.step()
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_tiles_cover_every_element_once() -> None:
    tensors = [torch.zeros(10), torch.zeros(3, 4), torch.zeros(25)]
    seen = [torch.zeros_like(t) for t in tensors]
    for params, marks in adamw._tiles([tensors, seen], 8):
        assert sum(p.numel() for p in params) <= 8 + 7  # a tile closes once it reaches the size
        torch._foreach_add_(marks, 1.0)
    assert all(bool((s == 1).all()) for s in seen)
