"""Windows over a split's tokens: random training batches and exact validation batches.

A split is a flat token array or a `TokenArray` (its shards read as one array); windows
are taken from it as from the concatenated array, across shard boundaries too.

Both datasets yield whole batches `(x, y)` of shape `(batch, seq)` (int64), `y` being `x`
shifted by one token, and both are `IterableDataset`s that shard themselves across DDP
ranks, so Lightning never wraps them in a `DistributedSampler` (which would pad the
validation split with repeated windows and make val loss inexact).

Training windows are a pure function of `(seed, global sample index)`: sample `j` of
micro-batch `i` on rank `r` of `W` ranks has global index `(i * W + r) * batch + j`, and its
window start is a hash of `(seed, global index)`. So

* no global RNG state is involved: a resumed run draws exactly the batches the
  uninterrupted run would have drawn, given only the index of its next micro-batch;
* ranks draw distinct samples;
* one process with batch `2b`, two DDP ranks with batch `b`, and one process with
  batch `b` and two accumulated micro-batches all see the same samples per optimizer step.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from llm_lit.data.hashing import splitmix64
from llm_lit.data.mixture import sample_sources, source_thresholds
from llm_lit.data.token_array import TokenArray

IGNORE_INDEX = -100


def window_starts(seed: int, sample_indices: np.ndarray, num_tokens: int, context_length: int) -> np.ndarray:
    """Start offsets `(len(sample_indices),)` of training windows, each in `[0, num_tokens - context_length - 1]`.

    A window needs `context_length + 1` tokens (inputs plus the shifted targets). The start is
    a hash of `(seed, sample index)`, so it depends on nothing else.
    """
    num_starts = num_tokens - context_length
    if num_starts < 1:
        raise ValueError(f"{num_tokens} tokens cannot hold one window of {context_length + 1} tokens.")
    keyed = splitmix64(np.asarray([seed], dtype=np.uint64)) ^ np.asarray(sample_indices, dtype=np.uint64)
    return (splitmix64(keyed) % np.uint64(num_starts)).astype(np.int64)


def _gather(tokens: TokenArray, starts: np.ndarray, length: int) -> torch.Tensor:
    """Rows `tokens[s : s + length]` for each start, as an int64 tensor `(len(starts), length)`."""
    return torch.from_numpy(tokens.gather(starts, length))


class RandomWindows(IterableDataset):
    """An endless stream of random training batches `(x, y)`, each `(batch_size, context_length)`.

    Args:
        tokens: the training split: a flat integer array (e.g. a read-only `np.memmap`) or a
            `TokenArray` of shards read as one (a window may span two shards).
        context_length: tokens per window.
        batch_size: windows per micro-batch on this rank.
        seed: seed of the window hash.
        rank, world_size: this process's place among the data-parallel processes.
        start_batch: index of the first micro-batch to yield (the number already consumed, after a resume).
    """

    def __init__(self, tokens: np.ndarray, context_length: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, start_batch: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size}).")
        window_starts(seed, np.zeros(1), len(tokens), context_length)  # fails early if too short
        self.tokens = TokenArray.of(tokens)
        self.context_length = context_length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def sample_indices(self, batch_index: int) -> np.ndarray:
        """Global sample indices `(batch_size,)` of micro-batch `batch_index` on this rank."""
        first = (batch_index * self.world_size + self.rank) * self.batch_size
        return np.arange(first, first + self.batch_size, dtype=np.uint64)

    def batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `batch_index` as `(x, y)`, each `(batch_size, context_length)` int64."""
        starts = window_starts(self.seed, self.sample_indices(batch_index), len(self.tokens), self.context_length)
        rows = _gather(self.tokens, starts, self.context_length + 1)
        return rows[:, :-1], rows[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # With DataLoader workers, worker w yields every num_workers-th batch; the DataLoader
        # takes batches from the workers round-robin, which restores the original order.
        worker = get_worker_info()
        offset, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        index = self.start_batch + offset
        while True:
            yield self.batch(index)
            index += step


class MixtureWindows(RandomWindows):
    """Random training batches drawn from several sources in proportion to their weights, each
    `(batch_size, context_length)`.

    Sample `g` comes from source `mixture.sample_sources(seed, g, weights)` and starts at
    `window_starts(seed, g, ...)` inside that source's tokens: a pure function of `(seed, g)`, so
    resume, DDP ranks and gradient accumulation see exactly the samples of one uninterrupted process,
    as with one source (`RandomWindows`, whose arguments these are, `tokens` aside).

    Args:
        sources: each source's training split (flat arrays or `TokenArray`s), each long enough for a window.
        weights: the sources' weights (positive; only their ratios matter).
    """

    def __init__(self, sources: Sequence[np.ndarray], weights: Sequence[float], context_length: int,
                 batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, start_batch: int = 0) -> None:
        if len(sources) != len(weights) or not sources:
            raise ValueError(f"{len(sources)} sources but {len(weights)} weights.")
        super().__init__(sources[0], context_length, batch_size, seed, rank, world_size, start_batch)
        for tokens in sources[1:]:
            window_starts(seed, np.zeros(1), len(tokens), context_length)  # fails early if too short
        self.sources = [TokenArray.of(t) for t in sources]
        self.weights = [float(w) for w in weights]
        source_thresholds(self.weights)  # fails early on a bad weight

    def batch_sources(self, batch_index: int) -> np.ndarray:
        """The source of each window of micro-batch `batch_index`, `(batch_size,)` int64."""
        return sample_sources(self.seed, self.sample_indices(batch_index), self.weights)

    def batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `batch_index` as `(x, y)`, each `(batch_size, context_length)` int64."""
        indices = self.sample_indices(batch_index)
        picks = sample_sources(self.seed, indices, self.weights)
        rows = np.empty((len(indices), self.context_length + 1), dtype=np.int64)
        for s in np.unique(picks):
            mine = picks == s
            tokens = self.sources[s]
            starts = window_starts(self.seed, indices[mine], len(tokens), self.context_length)
            rows[mine] = tokens.gather(starts, self.context_length + 1)
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]


class SequentialWindows(IterableDataset):
    """Every target of a split exactly once, in windows `stride` tokens apart, as batches `(x, y)`.

    Window `k` starts at `s = k * stride` and holds inputs `tokens[s : s + T]` and targets
    `tokens[s + 1 : s + T + 1]`. It scores only the targets that no earlier window scored:
    all of them in window 0, the last `stride` of them after that (the others become
    `IGNORE_INDEX`). So the scored targets of all windows together are `tokens[1:]`, each
    once, and each target after the first window is predicted from at least `T - stride + 1`
    and at most `T` tokens of context. With `stride == T` (the default) windows do not
    overlap. This is the Hugging Face perplexity guide's sliding window with
    `max_length = T + 1` (its windows hold the target after the last input).

    The last window may be short: it is padded with `pad_id` inputs and `IGNORE_INDEX`
    targets. Windows are dealt to ranks round-robin (`k = rank, rank + W, ...`); ranks with
    fewer windows get empty padding windows (all targets ignored), so every rank runs the
    same number of batches.

    Args:
        tokens: the split as a flat integer array or a `TokenArray` (needs at least 2 tokens).
        context_length: tokens per window (T).
        batch_size: windows per batch.
        rank, world_size: this process's place among the data-parallel processes.
        pad_id: input id used for padding (its targets are ignored, so any valid id works).
        stride: tokens between window starts, in [1, T] (default T).
    """

    def __init__(self, tokens: np.ndarray, context_length: int, batch_size: int, rank: int = 0,
                 world_size: int = 1, pad_id: int = 0, stride: int | None = None) -> None:
        if len(tokens) < 2:
            raise ValueError(f"A split of {len(tokens)} tokens has nothing to predict; it needs at least 2 tokens.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size}).")
        stride = context_length if stride is None else stride
        if not 1 <= stride <= context_length:
            raise ValueError(f"stride must be in [1, {context_length}] (got {stride}).")
        self.tokens = TokenArray.of(tokens)
        self.context_length = context_length
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.pad_id = pad_id
        self.stride = stride

    @property
    def num_windows(self) -> int:
        """Windows needed to score every target of the split once (all ranks together)."""
        beyond_first = len(self.tokens) - 1 - self.context_length  # targets after window 0's
        return 1 + max(0, math.ceil(beyond_first / self.stride))

    @property
    def windows_per_rank(self) -> int:
        """Windows each rank yields, padding included."""
        return math.ceil(self.num_windows / self.world_size)

    def __len__(self) -> int:
        """Batches this rank yields."""
        return math.ceil(self.windows_per_rank / self.batch_size)

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Window `k` as `(x, y)` numpy rows of `context_length` (padded; empty if `k >= num_windows`)."""
        x = np.full(self.context_length, self.pad_id, dtype=np.int64)
        y = np.full(self.context_length, IGNORE_INDEX, dtype=np.int64)
        if k < self.num_windows:
            start = k * self.stride
            chunk = np.asarray(self.tokens[start:start + self.context_length + 1], dtype=np.int64)
            x[:len(chunk) - 1] = chunk[:-1]
            y[:len(chunk) - 1] = chunk[1:]
            if k > 0:  # targets up to index start - stride + T were scored by window k - 1
                y[:self.context_length - self.stride] = IGNORE_INDEX
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        mine = [self.rank + i * self.world_size for i in range(self.windows_per_rank)]
        for first in range(0, len(mine), self.batch_size):
            pairs = [self.window(k) for k in mine[first:first + self.batch_size]]
            yield torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


class DataPosition:
    """The number of training micro-batches this rank has consumed: the DataModule counts them, the
    epoch windows read it when an epoch starts (a pickled copy travels to DataLoader workers)."""

    def __init__(self, consumed: int = 0) -> None:
        self.consumed = consumed


def epoch_order(seed: int, epoch: int, num_windows: int) -> np.ndarray:
    """The shuffled order `(num_windows,)` of the windows in `epoch`: a permutation of `range(num_windows)`
    that is a pure function of `(seed, epoch)`, the same on every rank."""
    return np.random.default_rng([seed, epoch]).permutation(num_windows)


class EpochWindows(IterableDataset):
    """Epochs over fixed windows: window `k` starts at `k * stride` and holds `context_length + 1` tokens,
    and each epoch serves every window once, in the shuffled `epoch_order(seed, epoch)`, as batches `(x, y)`.

    Sample `j` of an epoch is window `order[j]`. A full micro-batch `i` on rank `r` of `W` holds samples
    `(i * W + r) * batch + [0, batch)`, the same numbering as `RandomWindows`, so DDP and gradient
    accumulation see the same windows per optimizer step as one process does. The `rem` windows after
    the last full global batch form one shorter micro-batch, split as evenly as the ranks allow (rank `r`
    gets samples `[r * rem // W, (r + 1) * rem // W)` of them); fewer than `W` of them would leave a rank
    empty, so those are left out of that epoch (a different few each epoch, as the order is reshuffled).

    Where an epoch starts is read from `position` when iteration begins: micro-batch `consumed % len(self)`
    of epoch `consumed // len(self)`, so a resumed run (and each new epoch) continues exactly.

    Args:
        tokens: the training split (a flat integer array or a `TokenArray`).
        context_length: tokens per window (T).
        batch_size: windows per full micro-batch on this rank.
        stride: tokens between the starts of consecutive windows (T: no overlap).
        seed: seed of each epoch's order.
        rank, world_size: this process's place among the data-parallel processes.
        position: the micro-batches this rank consumed so far (shared with the DataModule).
    """

    def __init__(self, tokens: np.ndarray, context_length: int, batch_size: int, stride: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, position: DataPosition | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size}).")
        self.tokens = TokenArray.of(tokens)
        self.context_length = context_length
        self.batch_size = batch_size
        self.stride = stride
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = position if position is not None else DataPosition()
        self.num_windows = max(0, (len(self.tokens) - context_length - 1) // stride + 1)
        self.full_batches, self.rem = divmod(self.num_windows, world_size * batch_size)
        if len(self) == 0:
            raise ValueError(f"{self.num_windows} windows (stride {stride}) cannot give each of {world_size} ranks "
                             "one window per epoch.")

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank (the same on every rank)."""
        return self.full_batches + (1 if self.rem >= self.world_size else 0)

    def samples(self, batch_index: int) -> np.ndarray:
        """Sample numbers (positions in the epoch's order) of micro-batch `batch_index` of an epoch on this rank."""
        if batch_index < self.full_batches:
            first = (batch_index * self.world_size + self.rank) * self.batch_size
            return np.arange(first, first + self.batch_size)
        base = self.full_batches * self.world_size * self.batch_size
        return base + np.arange(self.rank * self.rem // self.world_size, (self.rank + 1) * self.rem // self.world_size)

    def batch(self, order: np.ndarray, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `batch_index` of the epoch whose order is `order`, as `(x, y)` int64 `(windows, T)`."""
        starts = order[self.samples(batch_index)].astype(np.int64) * self.stride
        rows = _gather(self.tokens, starts, self.context_length + 1)
        return rows[:, :-1], rows[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, first = divmod(self.position.consumed, len(self))
        order = epoch_order(self.seed, epoch, self.num_windows)
        worker = get_worker_info()
        offset, step = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index in range(first + offset, len(self), step):
            yield self.batch(order, index)
