"""TokenArray: shards read as one array; windows that span shards equal windows of the concatenation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_lit.data.datasets import RandomWindows, SequentialWindows
from llm_lit.data.manifest import SeparatorPolicy
from llm_lit.data.token_array import TokenArray

_PARTS = st.lists(st.lists(st.integers(0, 60_000), max_size=30), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(parts=_PARTS, data=st.data())
def test_len_slices_items_and_gather_equal_the_concatenated_array(parts, data):
    arrays = [np.array(p, dtype=np.uint16) for p in parts]
    whole = np.concatenate(arrays)
    tokens = TokenArray(arrays)
    assert len(tokens) == len(whole) and tokens.tolist() == whole.tolist()
    if len(whole) == 0:
        return
    a = data.draw(st.integers(-len(whole) - 2, len(whole) + 2))
    b = data.draw(st.integers(-len(whole) - 2, len(whole) + 2))
    assert tokens[a:b].tolist() == whole[a:b].tolist()
    assert tokens[a:b:2].tolist() == whole[a:b:2].tolist()
    i = data.draw(st.integers(-len(whole), len(whole) - 1))
    assert tokens[i] == whole[i]
    length = data.draw(st.integers(1, len(whole)))
    starts = np.array(data.draw(st.lists(st.integers(0, len(whole) - length), max_size=12)), dtype=np.int64)
    rows = tokens.gather(starts, length)
    assert rows.dtype == np.int64 and rows.shape == (len(starts), length)
    for row, s in zip(rows, starts):
        assert row.tolist() == whole[s:s + length].tolist()


def test_out_of_range_is_an_error():
    tokens = TokenArray([np.arange(5), np.arange(3)])
    with pytest.raises(IndexError):
        tokens[8]
    with pytest.raises(IndexError):
        tokens.gather(np.array([4]), 5)


def test_windows_across_documents_and_separators_equal_windows_of_the_concatenation():
    rng = np.random.default_rng(0)
    documents = [rng.integers(0, 300, size=n).astype(np.uint16) for n in (50, 7, 120, 33)]
    policy = SeparatorPolicy(between=(299,), before_each=(297,), after_each=(298,))
    parts = policy.parts(documents)
    whole = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    expected = np.concatenate([np.concatenate([[297], d, [298]]) if i == 0 else np.concatenate([[299, 297], d, [298]])
                               for i, d in enumerate(documents)])
    assert whole.tolist() == expected.tolist()
    tokens = TokenArray(parts)
    random_sharded, random_flat = RandomWindows(tokens, 16, 64, seed=3), RandomWindows(whole, 16, 64, seed=3)
    for i in range(5):
        for a, b in zip(random_sharded.batch(i), random_flat.batch(i)):
            assert torch.equal(a, b)
    spanning = [s for s in range(len(whole) - 17) if np.searchsorted(tokens.offsets, s, "right")
                != np.searchsorted(tokens.offsets, s + 16, "right")]
    assert spanning  # (the 64 x 5 random windows include some of these)
    for (xa, ya), (xb, yb) in zip(SequentialWindows(tokens, 16, 4), SequentialWindows(whole, 16, 4)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
