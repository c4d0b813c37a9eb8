"""Muon under data parallelism (DDP): the ranks share the Newton–Schulz work instead of each doing all of it.

With DDP every rank holds the same averaged gradients and momentum buffers, so every rank would orthogonalise
every matrix and get the same results. Here each matrix has one owner (the matrices are dealt out by size, so
the ranks' shares are about equal), each rank orthogonalises the matrices it owns, and one all-gather gives
every rank every result. On a small model the iteration is a large part of a step (on the default CPU config
a fifth of it), and this divides it by the number of ranks for the cost of one collective.

The results are bitwise those of `Muon` (the same arithmetic on the same inputs, by one rank instead of all),
which the tests check against `Muon` in two processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from llm_lit.optim.muon import Muon, orthogonalise


def owners_by_size(sizes: list[int], ranks: int) -> list[int]:
    """The rank that orthogonalises each matrix: the largest first, each to the rank with the least work so far
    (ties to the lower rank); `sizes` are element counts, the result one rank per matrix, in `sizes`' order."""
    load = [0] * ranks
    owners = [0] * len(sizes)
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        owner = min(range(ranks), key=lambda r: (load[r], r))
        owners[index] = owner
        load[owner] += sizes[index]
    return owners


class DataParallelMuon(Muon):
    """`Muon` whose Newton–Schulz iterations are split among the data-parallel ranks (see the module docstring).

    Takes `Muon`'s arguments. Outside an initialised process group of more than one rank it is `Muon`.
    """

    def orthogonalised(self, updates: list[Tensor], steps: int, dtype: torch.dtype) -> list[Tensor]:
        """`orthogonalise(u, steps, dtype)` of every update `u` (each `(rows, cols)`), in order: this rank's share
        computed here, the rest received from their owners."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not updates:
            return super().orthogonalised(updates, steps, dtype)
        ranks, rank = dist.get_world_size(), dist.get_rank()
        sizes = [update.numel() for update in updates]
        owners = owners_by_size(sizes, ranks)
        share = [sum(n for n, owner in zip(sizes, owners) if owner == r) for r in range(ranks)]
        mine = torch.zeros(max(share), dtype=dtype, device=updates[0].device)  # every rank sends the same length
        offset = 0
        for update, owner in zip(updates, owners):
            if owner == rank:
                mine[offset:offset + update.numel()] = orthogonalise(update, steps, dtype).reshape(-1)
                offset += update.numel()
        everyone = [torch.empty_like(mine) for _ in range(ranks)]
        dist.all_gather(everyone, mine)
        offsets, results = [0] * ranks, []
        for update, owner in zip(updates, owners):
            results.append(everyone[owner][offsets[owner]:offsets[owner] + update.numel()].view(update.shape))
            offsets[owner] += update.numel()
        return results
