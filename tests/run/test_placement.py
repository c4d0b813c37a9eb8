"""Where a fit runs on a CPU: one process per core when devices and strategy are left to llm_lit."""

from __future__ import annotations

import pytest

from llm_lit.run.placement import MAX_CPU_PROCESSES, Machine, cpu_data_parallel

EVERY_CORE = {"devices": 2, "strategy": "ddp"}


@pytest.mark.parametrize("subcommand, trainer, machine, expected", [
    ("fit", {"accelerator": "auto", "devices": "auto"}, Machine(2, False), EVERY_CORE),
    ("fit", {"accelerator": "cpu"}, Machine(2, False), EVERY_CORE),  # devices unset: Lightning's auto
    ("fit", {"accelerator": "cpu", "devices": "auto", "strategy": "auto"}, Machine(2, True), EVERY_CORE),
    ("fit", {"accelerator": "auto", "devices": "auto"}, Machine(2, True), {}),  # a GPU: Lightning's own auto
    ("fit", {"accelerator": "gpu", "devices": "auto"}, Machine(2, True), {}),
    ("fit", {"accelerator": "cpu", "devices": 1}, Machine(2, False), {}),  # the user's choice stands
    ("fit", {"accelerator": "cpu", "devices": "3"}, Machine(2, False), {}),
    ("fit", {"accelerator": "cpu", "strategy": "ddp_spawn"}, Machine(2, False), {}),
    ("fit", {"accelerator": "cpu", "num_nodes": 2}, Machine(2, False), {}),
    ("fit", {"accelerator": "cpu"}, Machine(1, False), {}),  # one core: one process
    ("validate", {"accelerator": "cpu"}, Machine(2, False), {}),  # only fit spreads out
    ("predict", {"accelerator": "cpu"}, Machine(2, False), {}),
    (None, {"accelerator": "cpu"}, Machine(2, False), {}),
    ("fit", {"accelerator": "cpu"}, Machine(8, False), {"devices": 8, "strategy": "ddp"}),
    ("fit", {"accelerator": "cpu"}, Machine(1000, False), {"devices": MAX_CPU_PROCESSES, "strategy": "ddp"}),
])
def test_a_cpu_fit_runs_one_process_per_core_unless_told_otherwise(subcommand, trainer, machine, expected) -> None:
    assert cpu_data_parallel(subcommand, trainer, machine) == expected


def test_this_machine_has_at_least_one_core() -> None:
    machine = Machine.this_one()
    assert machine.cores >= 1 and isinstance(machine.has_accelerator, bool)


def test_the_cpu_strategy_keeps_gradients_in_buckets_and_broadcasts_no_buffers_per_step(recwarn) -> None:
    from llm_lit.run.placement import cpu_ddp_strategy

    kwargs = cpu_ddp_strategy()._ddp_kwargs
    assert kwargs["gradient_as_bucket_view"] is True
    assert [kwargs[k] for k in ("forward_sync_buffers", "broadcast_buffers") if k in kwargs] == [False]
