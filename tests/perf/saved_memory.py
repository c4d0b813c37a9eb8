"""Measure the bytes autograd saves for the backward pass (what activation memory is)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def saved_activation_bytes(model: nn.Module, fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Run `fn()` and return `(bytes of distinct non-parameter storages autograd saved, fn's output)`.

    The pack hook keeps each saved tensor alive, so no storage is freed and reused (and
    counted twice or not at all) while `fn` runs.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.nbytes() > 0:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out
