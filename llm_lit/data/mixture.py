"""Which source each training sample comes from: a pure function of `(seed, sample index)` and the
sources' weights.

Sample `g` takes source `i` where `u_g = frac(g * phi + offset(seed))` falls in source `i`'s share of
`[0, 1)` (shares proportional to the weights, in order). The golden-ratio sequence `g * phi` is the
most evenly spread sequence there is: over any `n` consecutive samples every source's count is within
about `log(n)` of `n * weight`, so the shares are exact to within a fraction of a percent after a few
thousand windows, in every run, and every micro-batch holds the mixture. The arithmetic is on 64-bit
integers (wrapping), so it is the same on every machine. The window's start inside its source is the
hash of `(seed, g)`, as for one source (`datasets.window_starts`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from llm_lit.data.hashing import splitmix64

_PHI = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio
_BITS = 53  # of u compared with the thresholds


def source_thresholds(weights: Sequence[float]) -> np.ndarray:
    """The upper end of each source's share of `[0, 2**53)`, `(len(weights),)` uint64; the last is 2**53."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must be positive numbers (got {list(weights)}).")
    cumulative = np.cumsum(w) / w.sum()
    thresholds = np.floor(cumulative * 2.0 ** _BITS).astype(np.uint64)
    thresholds[-1] = np.uint64(1 << _BITS)
    return thresholds


def sample_sources(seed: int, sample_indices: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The source of each sample, `(len(sample_indices),)` int64 in `[0, len(weights))`."""
    offset = splitmix64(np.asarray([seed], dtype=np.uint64) ^ np.uint64(0xA5A5A5A5A5A5A5A5))
    with np.errstate(over="ignore"):
        x = np.asarray(sample_indices, dtype=np.uint64) * _PHI + offset
    u = x >> np.uint64(64 - _BITS)
    return np.searchsorted(source_thresholds(weights), u, side="right").astype(np.int64)
