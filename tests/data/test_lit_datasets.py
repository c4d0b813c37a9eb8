"""Window datasets: training windows stay in range, are reproducible and distinct across ranks;
validation windows cover a split exactly once, on any number of ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llm_lit.data.datasets import IGNORE_INDEX, RandomWindows, SequentialWindows, window_starts


def _tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 500, size=n).astype(np.uint16)


def test_window_starts_stay_in_range_and_depend_only_on_seed_and_index():
    idx = np.arange(10_000, dtype=np.uint64)
    starts = window_starts(7, idx, num_tokens=1000, context_length=64)
    assert starts.min() >= 0 and starts.max() <= 1000 - 64 - 1
    assert np.array_equal(starts, window_starts(7, idx, 1000, 64))
    assert not np.array_equal(starts, window_starts(8, idx, 1000, 64))
    # roughly uniform: every one of the 936 starts is hit at least once in 10k draws
    assert len(np.unique(starts)) > 900


def test_window_starts_reject_a_split_shorter_than_one_window():
    with pytest.raises(ValueError, match="cannot hold one window"):
        window_starts(0, np.arange(3), num_tokens=10, context_length=10)


def test_random_windows_are_shifted_slices_of_the_tokens():
    tokens = _tokens(5000)
    ds = RandomWindows(tokens, context_length=32, batch_size=4, seed=3)
    x, y = ds.batch(5)
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    starts = window_starts(3, ds.sample_indices(5), len(tokens), 32)
    for row, s in enumerate(starts):
        assert np.array_equal(x[row].numpy(), tokens[s:s + 32])


def test_random_windows_resume_from_a_batch_index_reproduces_the_stream():
    tokens = _tokens(5000)
    full = iter(RandomWindows(tokens, 16, 2, seed=1))
    stream = [next(full) for _ in range(6)]
    resumed = iter(RandomWindows(tokens, 16, 2, seed=1, start_batch=4))
    for expected in stream[4:]:
        got = next(resumed)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_random_windows_are_distinct_across_ranks_and_match_a_single_bigger_batch():
    tokens = _tokens(100_000)
    ranks = [RandomWindows(tokens, 16, 4, seed=9, rank=r, world_size=2) for r in range(2)]
    single = RandomWindows(tokens, 16, 8, seed=9)
    accumulate = RandomWindows(tokens, 16, 4, seed=9)
    for step in range(3):
        idx0, idx1 = ranks[0].sample_indices(step), ranks[1].sample_indices(step)
        assert not set(idx0.tolist()) & set(idx1.tolist())
        both = torch.cat([ranks[0].batch(step)[0], ranks[1].batch(step)[0]])
        assert not torch.equal(ranks[0].batch(step)[0], ranks[1].batch(step)[0])
        assert torch.equal(both, single.batch(step)[0])
        micro = torch.cat([accumulate.batch(2 * step)[0], accumulate.batch(2 * step + 1)[0]])
        assert torch.equal(both, micro)


def test_random_windows_with_dataloader_workers_keep_the_order():
    tokens = _tokens(5000)
    ds = RandomWindows(tokens, 8, 2, seed=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = [b for _, b in zip(range(5), loader)]
    for i, (x, _) in enumerate(got):
        assert torch.equal(x, ds.batch(i)[0])


@pytest.mark.parametrize("n,ctx,world,batch", [(101, 10, 1, 3), (100, 10, 2, 2), (1000, 7, 3, 4), (12, 64, 2, 1)])
def test_sequential_windows_cover_every_target_exactly_once(n, ctx, world, batch):
    tokens = np.arange(n, dtype=np.uint32)  # token value == its position
    seen = []
    lengths = set()
    for rank in range(world):
        ds = SequentialWindows(tokens, ctx, batch, rank=rank, world_size=world)
        batches = list(ds)
        lengths.add(len(batches))
        assert len(batches) == len(ds)
        for x, y in batches:
            assert x.shape == y.shape and x.shape[1] == ctx
            keep = y != IGNORE_INDEX
            assert torch.equal(y[keep], x[keep] + 1)  # targets are the next token
            seen.extend(y[keep].tolist())
    assert sorted(seen) == list(range(1, n))
    assert len(lengths) == 1  # every rank runs the same number of batches


def test_sequential_windows_reject_an_empty_split():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        SequentialWindows(np.zeros(1, dtype=np.uint16), 8, 2)
