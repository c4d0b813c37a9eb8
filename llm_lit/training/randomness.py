"""Training randomness that a resume reproduces exactly.

Dropout needs no saved state: before each training micro-batch torch's generator is reseeded
from a hash of `(seed, micro-batch index, rank)` -- the same idea as the data windows -- so a
resumed run draws the same masks as the uninterrupted one. The global python/numpy/torch RNG
states are saved in checkpoints and restored too, for anything else that draws from them.
"""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch

from llm_lit.data.hashing import splitmix64

RNG_KEY = "llm_lit_rng"


# ---------------------------------------------------------------------- randomness
def micro_batch_seed(seed: int, micro_batch: int, rank: int) -> int:
    """The torch seed of training micro-batch `micro_batch` on `rank`: a hash of the three (63-bit)."""
    mixed = splitmix64(np.asarray([seed], dtype=np.uint64)) ^ np.uint64(micro_batch)
    mixed = splitmix64(splitmix64(mixed) ^ np.uint64(rank))
    return int(mixed[0] >> np.uint64(1))


def rng_states() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch CPU and CUDA) as tensors and plain data (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states saved by `rng_states` (those present)."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        n = states["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class ReproducibleRandomness(L.Callback):
    """Reseeds torch before each training micro-batch (`micro_batch_seed` of the run's seed, the micro-batch index
    and the rank), and keeps the global RNG states in checkpoints, restoring them when fit resumes."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed(micro_batch_seed(seed, trainer.fit_loop.epoch_loop.total_batch_idx, trainer.global_rank))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if RNG_KEY in checkpoint:  # (Lightning calls it when fit resumes only)
            set_rng_states(checkpoint[RNG_KEY])
