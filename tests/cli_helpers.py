"""Helpers for tests that run the `llm_lit` command line in a subprocess and read what it logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: the repo importable, a fixed thread count (bitwise runs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "2"
    env.pop("LLM_LIT_DEBUG", None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m llm_lit ARGS` in `cwd` to the end (so logs, checkpoints and caches land there),
    in `env` (default `cli_env()`)."""
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` pairs of a TensorBoard scalar from every event file under `log_dir`, sorted."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points.extend((e.step, e.value) for e in acc.Scalars(tag))
    return sorted(points)
