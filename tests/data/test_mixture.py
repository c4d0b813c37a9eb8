"""Weighted mixtures: each source's share of training windows and tokens within 1% of its weight over
10,000 windows, every window drawn from one source as a pure function of (seed, sample index), the same
samples for two DDP ranks as for one process, and a resumed stream equal to the uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest

from llm_lit.data.datasets import MixtureWindows
from llm_lit.data.mixture import sample_sources, source_thresholds
from llm_lit.data.token_array import TokenArray

WEIGHTS = [0.6, 0.3, 0.1]


def _sources() -> list[np.ndarray]:
    """Three sources of different lengths whose ids tell them apart (source s holds ids 1000*s + ...)."""
    return [np.arange(n, dtype=np.int64) % 997 + 1000 * s for s, n in enumerate([50_000, 7_000, 123_457])]


@pytest.mark.parametrize("seed", [0, 1, 1337, 2**40 + 3])
def test_shares_over_ten_thousand_windows_are_within_one_percent(seed):
    windows = MixtureWindows(_sources(), WEIGHTS, context_length=32, batch_size=100, seed=seed)
    tokens = np.zeros(3)
    for i in range(100):  # 10,000 windows
        x, y = windows.batch(i)
        source = x.numpy() // 1000
        assert (source == source[:, :1]).all() and (y.numpy() // 1000 == source).all()  # one source per window
        np.add.at(tokens, source[:, 0], x.shape[1])
        assert (windows.batch_sources(i) == source[:, 0]).all()
    shares = tokens / tokens.sum()
    assert np.abs(shares - np.array(WEIGHTS)).max() < 0.01, shares


def test_sources_are_a_pure_function_of_seed_and_sample_index():
    indices = np.arange(5_000, dtype=np.uint64)
    a = sample_sources(7, indices, WEIGHTS)
    assert (a == sample_sources(7, indices, [6, 3, 1])).all()  # only the ratios matter
    assert (sample_sources(7, indices[::-1], WEIGHTS) == a[::-1]).all()  # each sample on its own
    assert not (sample_sources(8, indices, WEIGHTS) == a).all()
    counts = np.bincount(sample_sources(3, np.arange(1_000_000, dtype=np.uint64), WEIGHTS), minlength=3)
    assert np.abs(counts / 1e6 - WEIGHTS).max() < 1e-4  # evenly spread: the share is exact at any length
    assert source_thresholds([1.0])[-1] == 2**53


def test_two_ranks_see_the_samples_of_one_process_and_a_resume_continues_exactly():
    sources = [TokenArray([s]) for s in _sources()]
    one = MixtureWindows(sources, WEIGHTS, 16, batch_size=8, seed=5)
    ranks = [MixtureWindows(sources, WEIGHTS, 16, batch_size=4, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for step in range(20):
        together = np.concatenate([ranks[r].batch(step)[0].numpy() for r in (0, 1)])
        assert np.array_equal(together, one.batch(step)[0].numpy())
    stream = iter(one)
    first = [next(stream)[0] for _ in range(7)]
    resumed = iter(MixtureWindows(sources, WEIGHTS, 16, batch_size=8, seed=5, start_batch=5))
    assert all(np.array_equal(next(resumed)[0], b) for b in first[5:])


def test_bad_mixtures_fail_early():
    with pytest.raises(ValueError, match="weights must be positive"):
        MixtureWindows(_sources(), [1.0, 0.0, 1.0], 16, 4)
    with pytest.raises(ValueError, match="cannot hold one window"):
        MixtureWindows([np.arange(100), np.arange(10)], [1, 1], 16, 4)
