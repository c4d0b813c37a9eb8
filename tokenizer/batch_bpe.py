"""BPE on many distinct pre-tokens at once, with numpy.

`Tokenizer._encode_piece` is the reference: per pre-token, merge the leftmost pair of
lowest rank until no pair has a rank. Here all pre-tokens take that step together, round
after round, on flat arrays: a round merges one pair in every pre-token that still has
one (so there are as many rounds as the most merges any pre-token needs), and a
pre-token leaves the arrays once it has none. Only the two pairs beside a merge change,
so only their ranks are looked up again. On a first pass over a large text this is about
2x faster per new pre-token than the Python loop, which costs ~4 µs each.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class PairTable:
    """The merges as sorted arrays, for looking up the ranks of many id pairs at once.

    Args:
        ranks: `(left id, right id) -> rank` (lower merges first); ranks are distinct.
        merged: `(left id, right id) -> id of the merged token`, same keys as `ranks`.
        byte_ids: `byte_ids[b]` is the id of the single byte `b`, length 256.
        num_ids: larger than every id.
    """

    def __init__(self, ranks: dict[tuple[int, int], int], merged: dict[tuple[int, int], int], byte_ids: Sequence[int], num_ids: int):
        rank_values = np.fromiter(ranks.values(), np.int64, len(ranks))
        self.no_rank = int(rank_values.max()) + 1 if len(ranks) else 0
        self._num_ids = num_ids
        pairs = np.array(list(ranks), dtype=np.int64).reshape(-1, 2)
        keys = pairs[:, 0] * num_ids + pairs[:, 1]
        order = np.argsort(keys)
        # A sentinel key larger than any real one, so a lookup never runs off the end.
        self._keys = np.append(keys[order], np.iinfo(np.int64).max)
        self._ranks = np.append(rank_values[order], self.no_rank)
        self._made = np.zeros(self.no_rank + 1, dtype=np.int64)  # rank -> id the merge makes
        self._made[rank_values] = np.fromiter(map(merged.__getitem__, ranks), np.int64, len(ranks))
        self._byte_ids = np.asarray(byte_ids, dtype=np.int64)
        # Ranks of all byte pairs, so the first lookup over every position is one gather.
        self._byte_pair_ranks = self.rank_of(np.repeat(self._byte_ids, 256), np.tile(self._byte_ids, 256)).reshape(256, 256)

    def rank_of(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Ranks of the pairs `(left[i], right[i])`, `no_rank` where no merge exists; shape of `left`."""
        keys = left * self._num_ids + right
        at = np.searchsorted(self._keys, keys)
        return np.where(self._keys[at] == keys, self._ranks[at], self.no_rank)

    def encode_many(self, words: Sequence[bytes], out: list[list[int]] | None = None) -> list[list[int]]:
        """BPE ids of each non-empty byte string in `words`, each equal to merging it on its own.

        The ids of `words[k]` are appended to `out[k]` (empty lists when `out` is None); returns `out`.
        """
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        data = np.frombuffer(b"".join(words), dtype=np.uint8)
        ids = self._byte_ids[data]
        word = np.repeat(np.arange(len(words)), lengths)
        # rank[j]: rank of the pair (ids[j], ids[j + 1]) within one word; no_rank at a word's end.
        rank = np.full(len(ids), self.no_rank, dtype=np.int64)
        inside = np.flatnonzero(word[1:] == word[:-1])
        rank[inside] = self._byte_pair_ranks[data[inside], data[inside + 1]]
        if out is None:
            out = [[] for _ in words]
        while len(ids):
            ids, word, rank = self._merge_round(ids, word, rank, out)
        return out

    def _merge_round(self, ids: np.ndarray, word: np.ndarray, rank: np.ndarray, out: list[list[int]]):
        """Merge the leftmost lowest-rank pair of each word; words with none go to `out` and leave."""
        new_word = np.r_[True, word[1:] != word[:-1]]
        starts = np.flatnonzero(new_word)
        segment = np.cumsum(new_word) - 1
        offset = np.arange(len(ids)) - starts[segment]  # position within the word
        longest = int(offset.max()) + 1
        # One reduction finds the lowest rank and, among equal ranks, the leftmost position.
        best_rank, best_at = np.divmod(np.minimum.reduceat(rank * longest + offset, starts), longest)
        finished = best_rank == self.no_rank
        if finished.any():
            _collect(ids[finished[segment]], word[finished[segment]], out)
        merging = ~finished
        at = starts[merging] + best_at[merging]  # left position of each merge
        ids[at] = self._made[best_rank[merging]]
        keep = ~finished[segment]
        keep[at + 1] = False
        changed = np.zeros(len(ids), dtype=bool)
        changed[at] = True
        changed[at[offset[at] > 0] - 1] = True  # the pair that now ends in the merged token
        ids, word, rank, changed = ids[keep], word[keep], rank[keep], changed[keep]
        j = np.flatnonzero(changed)
        nxt = np.minimum(j + 1, len(ids) - 1)
        has_next = (j + 1 < len(ids)) & (word[nxt] == word[j])
        rank[j] = np.where(has_next, self.rank_of(ids[j], ids[nxt]), self.no_rank)
        return ids, word, rank


def _collect(ids: np.ndarray, word: np.ndarray, out: list[list[int]]) -> None:
    """Append each word's ids (`ids` grouped by `word`, in order) to `out[word]`."""
    bounds = np.flatnonzero(np.r_[True, word[1:] != word[:-1], True]).tolist()
    flat = ids.tolist()
    for w, a, b in zip(word[bounds[:-1]].tolist(), bounds, bounds[1:]):
        out[w] += flat[a:b]
