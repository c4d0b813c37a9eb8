"""`IdTable`: the ids of many distinct pre-tokens in flat numpy arrays, for `Tokenizer.encode_array`.

Each pre-token gets a row: its `lengths[row]` ids start at `starts[row]` in `ids`. A text's
ids are its rows' runs laid end to end, which numpy gathers in one pass from the list of
row numbers: cheaper than building a list of Python ints, or joining bytes, when a text
has millions of pre-tokens.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class _Rows(dict):
    """pre-token -> row; a pre-token seen for the first time gets the next row and is `pending`."""

    def __init__(self, table: "IdTable"):
        super().__init__()
        self._table = table

    def __missing__(self, piece: str) -> int:
        row = self[piece] = self._table.new_row()
        self._table.pending.append((piece, row))
        return row


class IdTable:
    """Rows of ids, one per distinct pre-token (or special token), filled once and read many times."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = _Rows(self)
        self.pending: list[tuple[str, int]] = []  # rows handed out but not filled yet
        self.starts = np.zeros(1 << 12, dtype=np.int64)
        self.lengths = np.zeros(1 << 12, dtype=np.int64)
        self.ids = np.zeros(1 << 14, dtype=np.int64)
        self.num_rows = 0
        self.num_ids = 0

    def __len__(self) -> int:
        return self.num_rows

    def new_row(self) -> int:
        """A new, empty row."""
        if self.num_rows == len(self.starts):
            self.starts = np.resize(self.starts, 2 * len(self.starts))
            self.lengths = np.resize(self.lengths, 2 * len(self.lengths))
        self.lengths[self.num_rows] = 0
        self.num_rows += 1
        return self.num_rows - 1

    def fill(self, rows: Sequence[int], id_lists: Sequence[Sequence[int]]) -> None:
        """Give each row its ids (rows from `new_row`, each filled once)."""
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        flat = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int64, count=int(lengths.sum()))
        while self.num_ids + len(flat) > len(self.ids):
            self.ids = np.resize(self.ids, 2 * len(self.ids))
        rows = np.asarray(rows, dtype=np.int64)
        self.starts[rows] = self.num_ids + np.cumsum(lengths) - lengths
        self.lengths[rows] = lengths
        self.ids[self.num_ids:self.num_ids + len(flat)] = flat
        self.num_ids += len(flat)

    def forget_pending(self) -> None:
        """Drop the rows handed out but not filled (after an error part-way through a text)."""
        for piece, _ in self.pending:
            self.rows.pop(piece, None)
        self.pending = []

    def gather(self, rows: Sequence[int], dtype: np.dtype) -> np.ndarray:
        """The ids of the rows, one run after another, as a 1-D array of `dtype`."""
        rows = np.array(rows, dtype=np.int64)
        lengths, starts = self.lengths[rows], self.starts[rows]
        if len(rows) == 0:
            return np.zeros(0, dtype=dtype)
        ends = np.cumsum(lengths)
        # position j of the output reads ids[starts[r] + (j - first output position of row r)]
        positions = np.arange(int(ends[-1])) + np.repeat(starts - (ends - lengths), lengths)
        return self.ids[positions].astype(dtype)
