"""Epochs over strided windows (`EpochWindows`): every window exactly once per epoch across ranks, a new
shuffled order each epoch that is a function of (seed, epoch) only, the same windows per optimizer step
for one process and for two ranks, and a start read from the consumed micro-batches (resume)."""

from __future__ import annotations

import numpy as np
import pytest

from llm_lit.data.datasets import DataPosition, EpochWindows, epoch_order

TOKENS = np.arange(10_000, dtype=np.uint16)  # token t at offset t: a window's first input says where it starts


def _starts(dataset: EpochWindows) -> list[list[int]]:
    """The window starts of each micro-batch of one epoch."""
    return [x[:, 0].tolist() for x, _ in dataset]


@pytest.mark.parametrize("stride, batch, world", [(16, 8, 2), (16, 7, 2), (5, 4, 3), (40, 3, 1), (16, 8, 1)])
def test_an_epoch_visits_every_window_exactly_once_across_ranks(stride, batch, world):
    ranks = [EpochWindows(TOKENS, 16, batch, stride, seed=3, rank=r, world_size=world) for r in range(world)]
    num_windows = (len(TOKENS) - 17) // stride + 1
    seen = [start for dataset in ranks for starts in _starts(dataset) for start in starts]
    left_out = num_windows % (world * batch) if num_windows % (world * batch) < world else 0
    assert len(seen) == len(set(seen)) == num_windows - left_out
    assert all(s % stride == 0 and s + 17 <= len(TOKENS) for s in seen)
    assert len({len(_starts(d)) for d in ranks}) == 1  # every rank runs the same number of micro-batches
    for x, y in ranks[0]:
        assert np.array_equal(x[:, 1:].numpy(), y[:, :-1].numpy()) and np.array_equal(y[:, 0].numpy(), x[:, 0].numpy() + 1)


def test_the_order_is_reshuffled_each_epoch_and_depends_on_seed_and_epoch_only():
    assert np.array_equal(epoch_order(1, 0, 50), epoch_order(1, 0, 50))
    assert not np.array_equal(epoch_order(1, 0, 50), epoch_order(1, 1, 50))
    assert not np.array_equal(epoch_order(1, 0, 50), epoch_order(2, 0, 50))
    assert sorted(epoch_order(1, 5, 50)) == list(range(50))
    position = DataPosition()
    dataset = EpochWindows(TOKENS, 16, 8, 16, seed=1, position=position)
    first = _starts(dataset)
    position.consumed = len(dataset)  # the loop consumed epoch 0; the next iteration is epoch 1
    second = _starts(dataset)
    assert sorted(sum(first, [])) == sorted(sum(second, [])) and first != second


def test_one_process_and_two_ranks_see_the_same_windows_per_optimizer_step():
    single = _starts(EpochWindows(TOKENS, 16, 16, 16, seed=7))
    ranks = [_starts(EpochWindows(TOKENS, 16, 8, 16, seed=7, rank=r, world_size=2)) for r in range(2)]
    # accumulation: one process, batch 8, two micro-batches per step
    accumulated = _starts(EpochWindows(TOKENS, 16, 8, 16, seed=7))
    full_steps = len(TOKENS) // 16 // 16
    for step in range(full_steps):
        assert sorted(single[step]) == sorted(ranks[0][step] + ranks[1][step])
        assert sorted(single[step]) == sorted(accumulated[2 * step] + accumulated[2 * step + 1])


def test_iteration_starts_where_the_consumed_micro_batches_say():
    position = DataPosition()
    dataset = EpochWindows(TOKENS, 16, 8, 12, seed=5, position=position)
    epochs = []
    for epoch in range(2):
        position.consumed = epoch * len(dataset)
        epochs.append(_starts(dataset))
    position.consumed = len(dataset) + 9  # 9 micro-batches into the second epoch
    assert _starts(dataset) == epochs[1][9:]


def test_too_few_windows_for_the_ranks_is_refused():
    with pytest.raises(ValueError, match="cannot give each of 4 ranks one window per epoch"):
        EpochWindows(np.arange(40), 16, 8, 16, world_size=4)
