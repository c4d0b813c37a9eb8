"""Helpers for the Lightning-stack tests: run the CLI in a subprocess, read TensorBoard scalars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m llm_lit ARGS` in `cwd` (so logs, checkpoints and caches land there)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` pairs of a TensorBoard scalar from every event file under `log_dir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points.extend((e.step, e.value) for e in acc.Scalars(tag))
    return sorted(points)
