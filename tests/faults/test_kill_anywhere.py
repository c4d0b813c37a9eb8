"""The kill-anywhere sweep (`kill_sweep.py`): SIGKILL at 20 evenly spread moments of a 40-step debug run and at 10
of a 2-process DDP run, each resumed with `--ckpt_path last`, ends with every tensor of every checkpoint and every
logged scalar equal to the uninterrupted run's. Slow: about 40 runs of each (the lead's quiet machine: ~30 min)."""

from __future__ import annotations

import pytest

from kill_sweep import DDP, SINGLE, sweep


@pytest.mark.slow
@pytest.mark.parametrize("args, kills", [(SINGLE, 20), (DDP, 10)], ids=["single-process-x20", "ddp-2-processes-x10"])
def test_a_kill_at_any_moment_then_resume_ends_as_the_uninterrupted_run(tmp_path, args, kills):
    _, attempts = sweep(args, kills, tmp_path)
    assert sum(a.landed for a in attempts) >= kills // 2  # most kills landed while the run was going on
    assert {i: a.differences for i, a in enumerate(attempts) if a.differences} == {}
