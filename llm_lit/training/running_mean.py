"""The train loss's running mean in checkpoints, so that a resumed run logs what the uninterrupted one would.

`train/loss` is logged every `log_every_n_steps` as the mean over the steps since the previous log. A
checkpoint written between two logging steps holds that mean's unfinished state (its sum and weight,
per rank); a resume puts it back, so the first `train/loss` after it averages the same steps, bitwise
for the same world size. With another world size rank 0 takes the sums and the others start empty.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchmetrics import MeanMetric

#: Checkpoint key of the train loss's running mean since the last logging step (per rank).
TRAIN_LOSS_KEY = "llm_lit_train_loss"


def running_mean_state(mean: MeanMetric, gather: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """`mean`'s state on every rank, `{"mean_value": (world_size,), "weight": (world_size,)}` on the CPU; `gather`
    collects a tensor from all ranks (every rank must call it)."""
    return {name: gather(value.detach()).reshape(-1).cpu() for name, value in mean.metric_state.items()}


def restore_running_mean(mean: MeanMetric, saved: dict[str, torch.Tensor], rank: int, world_size: int) -> None:
    """Put back into `mean` this rank's part of a state saved by `running_mean_state`."""
    for name, values in saved.items():
        if len(values) == world_size:
            value = values[rank]
        else:
            value = values.sum() if rank == 0 else torch.zeros_like(values[0])
        setattr(mean, name, value.clone())
