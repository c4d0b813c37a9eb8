"""Helpers for tests that run the `llm_lit` command line in a subprocess and read what it logged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"
#: Where the first `llm_lit fit --config configs/debug.yaml` in a folder writes (see llm_lit.run.folders):
#: TensorBoard logs and config.yaml in DEBUG_RUN, checkpoints in DEBUG_CKPTS.
DEBUG_RUN = Path("runs") / "debug" / "version_0"
DEBUG_CKPTS = DEBUG_RUN / "checkpoints"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a gloo rendezvous or a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: the repo importable, a fixed thread count (bitwise runs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    # two threads; one under pytest-xdist, where each worker has a core of its own
    env["OMP_NUM_THREADS"] = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
    env.pop("LLM_LIT_DEBUG", None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m llm_lit ARGS` in `cwd` to the end (so logs, checkpoints and caches land there),
    in `env` (default `cli_env()`)."""
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def finished_run(args: list[str], root: Path) -> Path:
    """`root`, after `python -m llm_lit ARGS` ran there to its end and exited with 0."""
    result = run_cli(args, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def one_line_error(argv: list[str], capsys, alone: bool = False) -> str:
    """Run the CLI in-process on `argv`: it must exit with 2, print no traceback, and end stderr with one
    `error: ...` sentence, which is returned (with `alone`, stderr must hold nothing else)."""
    from llm_lit.commands.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and (not alone or "\n" not in err), err[-2000:]
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and last.endswith((".", "?")), err[-2000:]
    return last


#: Lightning messages a user cannot act on, which llm_lit silences (llm_lit/quiet.py): no run may print them.
LIGHTNING_NOISE = ("litlogger", "LeafSpec", "exists and is not empty", "dirpath has changed", "sync_dist=True",
                   "`weights_only` was not set")


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    """`result` (of `run_cli`) printed none of `LIGHTNING_NOISE`."""
    printed = result.stdout + result.stderr
    for noise in LIGHTNING_NOISE:
        assert noise not in printed, (noise, printed[-3000:])


def scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` pairs of a TensorBoard scalar from every event file under `log_dir`, sorted."""
    from llm_lit.commands.plot import read_scalars

    return sorted(read_scalars(log_dir).get(tag, []))
