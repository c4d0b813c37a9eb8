"""`TokenArray`: several 1-D token arrays (shards, separator ids) read as one, without copying.

A split of the token cache is many shards (one per source file) with separator ids
between them. The window datasets need only three things of "the split as one array":
its length, a slice, and many windows at once; this class gives exactly those, so a
window may start in one shard and end in the next (crossing the separator) just as in
the concatenated array.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from llm_lit.errors import UserError


class TokenArray:
    """The concatenation of `parts` (1-D integer arrays, e.g. read-only `np.memmap`s), read lazily.

    `len(a)`, `a[i]`, `a[i:j]` (a new array of the parts' dtype, never a view of a shard) and
    `a.gather(starts, length)` behave as on `np.concatenate(parts)`, which is never built.

    With `id_limit`, every slice and window read is checked to hold ids below it (one max per read):
    a shard whose bytes changed on disk after it was checked (bit rot) is then refused in one line
    naming it, instead of reaching the model as ids it has no embedding for.
    """

    def __init__(self, parts: Sequence[np.ndarray], id_limit: Optional[int] = None) -> None:
        self.id_limit = id_limit
        self.parts = [p for p in parts if len(p)]
        lengths = np.array([len(p) for p in self.parts], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (num_parts + 1,)
        dtypes = [p.dtype for p in self.parts]
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.uint16)

    @classmethod
    def of(cls, tokens: "np.ndarray | TokenArray") -> "TokenArray":
        """`tokens` itself if it is a TokenArray, else a TokenArray of the one array."""
        return tokens if isinstance(tokens, TokenArray) else cls([tokens])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | slice) -> np.ndarray | np.integer:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[start:stop][::step] if stop > start else np.empty(0, self.dtype)
            return self._slice(start, stop)
        index = int(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {key} is out of range for {len(self)} tokens.")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part][index - self.offsets[part]]

    def _slice(self, start: int, stop: int) -> np.ndarray:
        values = self._read(start, stop)
        if self.id_limit is not None and len(values) and int(values.max()) >= self.id_limit:
            self._refuse(start + int(np.argmax(values >= self.id_limit)))
        return values

    def _read(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty(0, self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        last = int(np.searchsorted(self.offsets, stop - 1, side="right")) - 1
        if first == last:  # a copy, so that nothing returned keeps a shard's file mapped
            return np.array(self.parts[first][start - self.offsets[first]:stop - self.offsets[first]])
        pieces = []
        for p in range(first, last + 1):
            lo = max(start, self.offsets[p]) - self.offsets[p]
            hi = min(stop, self.offsets[p + 1]) - self.offsets[p]
            pieces.append(np.asarray(self.parts[p][lo:hi]).astype(self.dtype, copy=False))
        return np.concatenate(pieces)

    def gather(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Windows `self[s : s + length]` for each start, as int64 rows `(len(starts), length)`.

        Windows inside one part are read with one fancy index per part; the few that span
        parts are sliced one by one.
        """
        starts = np.asarray(starts, dtype=np.int64)
        out = np.empty((len(starts), length), dtype=np.int64)
        if len(starts) == 0:
            return out
        if starts.min() < 0 or starts.max() + length > len(self):
            raise IndexError(f"a window of {length} tokens from {int(starts.max())} runs past the {len(self)} tokens.")
        steps = np.arange(length)
        if len(self.parts) == 1:  # one shard: a single fancy index, as on a plain array
            out[:] = self.parts[0][starts[:, None] + steps]
        else:
            self._gather_parts(out, starts, length, steps)
        if self.id_limit is not None and int(out.max()) >= self.id_limit:
            row, column = np.argwhere(out >= self.id_limit)[0]
            self._refuse(int(starts[row]) + int(column))
        return out

    def _gather_parts(self, out: np.ndarray, starts: np.ndarray, length: int, steps: np.ndarray) -> None:
        """Fill `out` with the windows of `starts` when there are several parts."""
        first = np.searchsorted(self.offsets, starts, side="right") - 1
        last = np.searchsorted(self.offsets, starts + length - 1, side="right") - 1
        for p in np.unique(first[first == last]):
            rows = np.flatnonzero((first == p) & (last == p))
            out[rows] = self.parts[p][(starts[rows] - self.offsets[p])[:, None] + steps]
        for row in np.flatnonzero(first != last):
            out[row] = self._read(int(starts[row]), int(starts[row]) + length)

    def _refuse(self, position: int) -> None:
        """`UserError` naming the part (its file, for a memory-mapped shard) that holds an id beyond `id_limit`
        at `position`."""
        part = int(np.searchsorted(self.offsets, position, side="right")) - 1
        value = int(self.parts[part][position - self.offsets[part]])
        name = getattr(self.parts[part], "filename", None)
        where = f"The token shard '{name}'" if name else "A separator of the token cache"
        raise UserError(f"{where} holds id {value} (at token {position - self.offsets[part]:,}), beyond the "
                        f"tokenizer's {self.id_limit} ids: its bytes changed after it was written; rebuild it "
                        "with --data.verify full (or delete its token cache folder).")

    def tolist(self) -> list[int]:
        """Every id, as Python ints (materialises the whole array: for small splits and tests)."""
        return self[:].tolist()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"TokenArray({len(self):,} tokens in {len(self.parts)} parts)"
