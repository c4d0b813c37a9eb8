"""A Lightning callback for the epoch tests: saves every training batch's inputs `x` this rank saw, in order,
to `<dirpath>/rank<r>.pt` (a list of `(batch, seq)` tensors) when training ends."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch


class WindowRecorder(L.Callback):
    """Records the inputs of each training batch on this rank (see the module docstring)."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches.append(batch[0].detach().cpu().clone())

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.dirpath.mkdir(parents=True, exist_ok=True)
        torch.save(self.batches, self.dirpath / f"rank{trainer.global_rank}.pt")
