"""Run `llm_lit fit` as a user would (a subprocess in its own folder) and read back what it logged.

Shared by `time_to_bpb.py` and `cpu_scaling.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "configs" / "shakespeare.yaml"


def fit(workdir: Path, args: list[str], timeout: Optional[float] = None,
        environ: Optional[dict[str, str]] = None) -> tuple[float, dict[str, list]]:
    """Run `llm_lit fit ARGS` in `workdir` (created; its runs/ and token cache stay there), with `environ` added
    to the environment; returns the command's wall seconds and every scalar it logged (tag -> `(step, value)`
    pairs, one per step)."""
    from llm_lit.commands.plot import newest_run_with_losses, one_per_step

    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OMP_NUM_THREADS", None)  # the config's torch_threads decides, as for a user
    env.update(environ or {})
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "llm_lit", "fit", *args, "--trainer.enable_progress_bar", "false"],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"llm_lit fit {' '.join(args)} failed in {workdir}:\n{result.stderr[-3000:]}")
    _, scalars = newest_run_with_losses(workdir / "runs")
    return wall, {tag: one_per_step(points) for tag, points in scalars.items()}
