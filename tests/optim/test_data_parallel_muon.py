"""`DataParallelMuon` (the ranks share the Newton–Schulz work) against `Muon` (every rank does all of it), in two
gloo processes: bitwise the same weights and momentum after a few steps."""

from __future__ import annotations


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cli_helpers import free_port
from llm_lit.optim.data_parallel_muon import DataParallelMuon, owners_by_size
from llm_lit.optim.muon import Muon

SHAPES = [(64, 32), (32, 32), (96, 32), (32, 96), (32, 32), (16, 48)]


@pytest.mark.parametrize("sizes, ranks, owners", [
    ([10, 10, 10, 10], 2, [0, 1, 0, 1]),
    ([30, 10, 10, 10], 2, [0, 1, 1, 1]),  # 30 | 10 + 10 + 10
    ([5], 3, [0]),
    ([4, 4, 4], 4, [0, 1, 2]),
])
def test_matrices_are_dealt_out_by_size(sizes, ranks, owners):
    assert owners_by_size(sizes, ranks) == owners


def _weights_after_steps(kind: type[Muon], dtype: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in SHAPES]
    optimizer = kind(params, lr=0.02, weight_decay=0.1, ns_dtype=dtype)
    for step in range(3):
        for i, p in enumerate(params):
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * step + i))
        optimizer.step()
    return [p.detach().clone() for p in params] + [optimizer.state[p]["momentum_buffer"].clone() for p in params]


def _rank(rank: int, port: int, dtype: str, failures) -> None:  # noqa: ANN001 - a multiprocessing list proxy
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for a, b in zip(_weights_after_steps(Muon, dtype), _weights_after_steps(DataParallelMuon, dtype)):
            if not torch.equal(a, b):
                failures.append(f"rank {rank}: max difference {(a - b).abs().max().item()}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_two_ranks_sharing_the_work_update_bitwise_as_muon(dtype):
    port = free_port()
    with mp.Manager() as manager:
        failures = manager.list()
        mp.spawn(_rank, args=(port, dtype, failures), nprocs=2, join=True)
        assert list(failures) == []


def test_without_a_process_group_it_is_muon():
    for a, b in zip(_weights_after_steps(Muon, "bfloat16"), _weights_after_steps(DataParallelMuon, "bfloat16")):
        assert torch.equal(a, b)
