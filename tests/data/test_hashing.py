"""splitmix64 equals the published generator, elementwise, and the seeds built from it stay put."""

from __future__ import annotations

import numpy as np

from llm_lit.data.datasets import window_starts
from llm_lit.data.hashing import splitmix64
from llm_lit.training.randomness import micro_batch_seed

GAMMA = 0x9E3779B97F4A7C15


def test_splitmix64_is_the_published_generator():
    # The first two outputs of Vigna's splitmix64 seeded with 0: the finalizer of GAMMA and of 2 * GAMMA,
    # which `splitmix64` (state + GAMMA, then the mix) computes from 0 and GAMMA.
    out = splitmix64(np.array([0, GAMMA], dtype=np.uint64))
    assert out.dtype == np.uint64 and out.shape == (2,)
    assert [int(v) for v in out] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


def test_splitmix64_is_elementwise_and_leaves_its_input_alone():
    x = np.arange(12, dtype=np.uint64).reshape(3, 4)
    out = splitmix64(x)
    assert out.shape == (3, 4) and np.array_equal(x, np.arange(12, dtype=np.uint64).reshape(3, 4))
    assert all(out[i, j] == splitmix64(np.array([x[i, j]]))[0] for i in range(3) for j in range(4))
    assert len(np.unique(out)) == 12


def test_seeds_and_windows_built_on_it_are_unchanged():
    """Resumed runs redraw dropout masks and windows from these: they must not change between versions
    (the values were printed by the code before splitmix64 moved to its own module)."""
    assert [micro_batch_seed(1337, i, r) for i, r in ((0, 0), (1, 0), (0, 1))] == [
        3269731276231068113, 5954926056756135890, 7635188740105049934]
    assert window_starts(7, np.arange(5, dtype=np.uint64), 1000, 64).tolist() == [333, 543, 805, 325, 306]
