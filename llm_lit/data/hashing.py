"""splitmix64: the integer hash behind every reproducible random choice in llm_lit.

Training windows (`llm_lit.data.datasets.window_starts`) and the per-micro-batch torch seed
(`llm_lit.training.randomness.micro_batch_seed`) are hashes of plain integers (seed, sample or micro-batch
index, rank), so they depend on nothing but those integers: no RNG state to save or restore.
"""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of each element of `x` (any shape, as uint64): a fast, well-mixed
    bijection on 64-bit integers, with wrapping arithmetic. Returns a new uint64 array of `x`'s shape."""
    x = np.asarray(x).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) & _MASK64
