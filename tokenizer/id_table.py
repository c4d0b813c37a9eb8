"""`IdTable`: the ids of many distinct pre-tokens in flat numpy arrays, for `Tokenizer.encode_array`.

Each pre-token gets a row: its `lengths[row]` ids start at `starts[row]` in `ids`. A text's
ids are its rows' runs laid end to end, which numpy gathers in one pass from the list of
row numbers: cheaper than building a list of Python ints, or joining bytes, when a text
has millions of pre-tokens.
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np


class _Rows(dict):
    """pre-token -> row; a pre-token seen for the first time gets the next row and is `pending`."""

    def __init__(self, table: "IdTable"):
        super().__init__()
        self._table = table

    def __missing__(self, piece: str) -> int:
        table = self._table
        row = self[piece] = table.num_rows
        table.num_rows += 1
        table.pending.append(piece)
        return row


class IdTable:
    """Rows of ids, one per distinct pre-token (or special token), filled once and read many times.

    Rows are handed out in order by `rows[piece]`; the pending ones (the last
    `len(pending)` rows) get their ids together from `fill`.
    """

    def __init__(self) -> None:
        self.rows: dict[str, int] = _Rows(self)
        self.pending: list[str] = []  # pieces of the rows handed out but not filled yet
        self.num_rows = 0
        self.num_ids = 0
        self.starts = np.zeros(1 << 12, dtype=np.int64)
        self.lengths = np.zeros(1 << 12, dtype=np.int64)
        self.ids = np.zeros(1 << 14, dtype=np.int64)

    def __len__(self) -> int:
        return self.num_rows

    def fill(self, id_lists: Sequence[Sequence[int]]) -> None:
        """Give the pending rows their ids, in order (`id_lists[k]` for the k-th pending piece)."""
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
        self.starts = _grown(self.starts, self.num_rows)
        self.lengths = _grown(self.lengths, self.num_rows)
        self.ids = _grown(self.ids, self.num_ids + len(flat))
        first = self.num_rows - len(id_lists)
        self.starts[first:self.num_rows] = self.num_ids + np.cumsum(lengths) - lengths
        self.lengths[first:self.num_rows] = lengths
        self.ids[self.num_ids:self.num_ids + len(flat)] = flat
        self.num_ids += len(flat)
        self.pending = []

    def forget_pending(self) -> None:
        """Drop the rows handed out but not filled (after an error part-way through a text)."""
        for piece in self.pending:
            self.rows.pop(piece, None)
        self.num_rows -= len(self.pending)
        self.pending = []

    def gather(self, rows: list[int], dtype: np.dtype) -> np.ndarray:
        """The ids of the rows, one run after another, as a 1-D array of `dtype`."""
        rows = np.fromiter(rows, dtype=np.int64, count=len(rows))
        if len(rows) == 0:
            return np.zeros(0, dtype=dtype)
        lengths, starts = self.lengths[rows], self.starts[rows]
        ends = np.cumsum(lengths)
        # output position j of row r reads ids[starts[r] + j - (first output position of r)]
        positions = np.arange(int(ends[-1])) + np.repeat(starts - (ends - lengths), lengths)
        return self.ids[positions].astype(dtype)


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """`array`, or a copy at least twice as long, so that it holds `size` items."""
    return array if size <= len(array) else np.resize(array, max(size, 2 * len(array)))
