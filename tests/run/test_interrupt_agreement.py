"""`InterruptCheckpoint`'s stop agreement: under DDP a signal on one rank stops every rank, one step later and
at the same step (the all-reduce of the flags is read a step after it starts); one process stops at once."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cli_helpers import free_port
from llm_lit.run.interrupts import InterruptCheckpoint

SIGNALLED_RANK, SIGNALLED_AT = 1, 3


def _trainer(world_size: int) -> SimpleNamespace:
    """What the callback reads of a Trainer: gradient accumulation, the world size, Lightning's stop flag."""
    return SimpleNamespace(accumulate_grad_batches=1, world_size=world_size,
                           _signal_connector=SimpleNamespace(received_sigterm=False))


def _stop_step(callback: InterruptCheckpoint, trainer: SimpleNamespace, rank: int, steps: int = 10) -> int:
    """Run the step-end hook for `steps` steps, signalling `SIGNALLED_RANK` at `SIGNALLED_AT`; the step the
    callback asked to stop at (-1: never)."""
    module = SimpleNamespace(device=torch.device("cpu"))
    for step in range(steps):
        if rank == SIGNALLED_RANK and step == SIGNALLED_AT:
            callback.signal_received = signal.SIGTERM  # what the signal handler records
        callback.on_train_batch_end(trainer, module, None, None, step)
        if trainer._signal_connector.received_sigterm:
            return step
    return -1


def _rank(rank: int, port: int, results) -> None:  # noqa: ANN001 - a multiprocessing dict proxy
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        callback = InterruptCheckpoint()
        trainer = _trainer(world_size=2)
        step = _stop_step(callback, trainer, rank)
        callback.on_train_end(trainer, None)  # nothing left in flight: the next collective is not confused
        dist.barrier()
        results[rank] = (step, callback.signal_received)
    finally:
        dist.destroy_process_group()


def test_a_signal_on_one_rank_stops_every_rank_one_step_later_at_the_same_step():
    port = free_port()
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(port, results), nprocs=2, join=True)
        assert dict(results) == {0: (SIGNALLED_AT + 1, signal.SIGTERM), 1: (SIGNALLED_AT + 1, signal.SIGTERM)}


def test_one_process_stops_at_the_step_of_the_signal():
    callback = InterruptCheckpoint()
    assert _stop_step(callback, _trainer(world_size=1), SIGNALLED_RANK) == SIGNALLED_AT
