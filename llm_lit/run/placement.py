"""Where a fit runs on a CPU: every core, as data-parallel processes of one thread each.

Lightning's `trainer.devices: auto` means every GPU on a GPU machine but a single process on a CPU. For
the small models llm_lit trains on CPUs, a training step is compute-bound on one core (twice the batch
takes twice the time), and a second thread in the same process gains little on matrices this narrow,
so the fastest use of `n` cores is `n` processes (DDP over gloo) of one thread each: the step rate
grows almost `n`-fold while the gradients' all-reduce costs a few milliseconds a step. A fit on a CPU
with `devices: auto` and no strategy chosen therefore runs one process per usable core; any explicit
`trainer.devices` or `trainer.strategy` is kept as given, and validate, test and predict stay in one
process. `data.batch_size` is per process, as everywhere in Lightning.

Two DDP settings differ from Lightning's defaults, each measured on a 2-core machine at the default
config's size (`benchmarks/cpu_scaling.py`): the processes do not broadcast the model's buffers at
each forward (`broadcast_buffers=False`; the only buffers are constants, RoPE's frequencies, and that
collective made each step wait for the slower rank once more: a fifth of a step), and the gradients
live in DDP's all-reduce buckets (`gradient_as_bucket_view=True`) instead of being copied into them
and back (another fifth). Nothing else is shared per step but the gradients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

#: At most this many processes (the all-reduce and the per-process start-up outgrow the gain beyond it).
MAX_CPU_PROCESSES = 64


@dataclass(frozen=True)
class Machine:
    """What the placement depends on: usable CPU cores and whether an accelerator (CUDA or MPS) is there."""

    cores: int
    has_accelerator: bool

    @classmethod
    def this_one(cls) -> "Machine":
        """This machine: the cores this process may run on, and CUDA or MPS availability."""
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        mps = getattr(torch.backends, "mps", None)
        return cls(cores, torch.cuda.is_available() or bool(mps and mps.is_available()))


def cpu_data_parallel(subcommand: Optional[str], trainer: Mapping[str, Any], machine: Machine) -> dict[str, Any]:
    """The trainer settings that run a fit on every core of `machine` (`{"devices": n, "strategy": "ddp"}`), or
    `{}` when the run is not a one-node fit on a CPU with `devices` and `strategy` left to llm_lit (`auto`)."""
    accelerator = str(trainer.get("accelerator") or "auto").lower()
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not machine.has_accelerator)
    chosen_by_user = (str(trainer.get("devices", "auto")) != "auto"
                      or str(trainer.get("strategy") or "auto") != "auto"
                      or int(trainer.get("num_nodes") or 1) != 1)
    processes = min(machine.cores, MAX_CPU_PROCESSES)
    if subcommand != "fit" or not on_cpu or chosen_by_user or processes < 2:
        return {}
    return {"devices": processes, "strategy": "ddp"}


def cpu_ddp_strategy() -> Any:
    """The DDP strategy of `cpu_data_parallel`'s "ddp": Lightning's, without the per-step buffer broadcast and
    with the gradients kept in the all-reduce buckets (see the module docstring)."""
    import inspect

    from lightning.pytorch.strategies import DDPStrategy

    # newer torch names the per-forward buffer sync `forward_sync_buffers` (and warns on the old name)
    accepted = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"
    return DDPStrategy(gradient_as_bucket_view=True, **{no_sync: False})
