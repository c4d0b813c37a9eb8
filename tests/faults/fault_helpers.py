"""Helpers for the fault tests: run `llm_lit fit` in a subprocess, interrupt it, compare the results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from cli_helpers import DEBUG_CKPTS, cli_env, run_cli, scalars


FAULTS = Path(__file__).resolve().parent
#: The last checkpoint of a debug.yaml run, relative to the folder it runs in.
LAST = DEBUG_CKPTS / "last.ckpt"


def faults_env() -> dict[str, str]:
    """`cli_env()` with this folder importable too (for `self_kill.SignalAt` in a CLI subprocess)."""
    env = cli_env()
    env["PYTHONPATH"] = str(FAULTS) + os.pathsep + env["PYTHONPATH"]
    return env


def signal_at(step: int, hook: str = "train_batch_start", signal_name: str = "SIGKILL", repeat: int = 1) -> list[str]:
    """CLI arguments adding `self_kill.SignalAt`: the run signals itself at `hook` of global step `step`."""
    return ["--trainer.callbacks+=self_kill.SignalAt", "--trainer.callbacks.step", str(step),
            "--trainer.callbacks.hook", hook, "--trainer.callbacks.signal_name", signal_name,
            "--trainer.callbacks.repeat", str(repeat)]


def checkpoint_step(path: Path) -> int:
    """global_step of a checkpoint file, or -1 when it does not exist (yet)."""
    if not path.is_file():
        return -1
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def run_and_interrupt(args: list[str], cwd: Path, watch: Path, signum: int, after_step: int = 1,
                      timeout: float = 300) -> subprocess.CompletedProcess:
    """Start `python -m llm_lit ARGS`, send `signum` to its process group once `watch` (a checkpoint) holds
    `global_step >= after_step`, and wait for it to end. Fails if it ends before that."""
    proc = subprocess.Popen([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while checkpoint_step(watch) < after_step:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before its checkpoint appeared:\n{err[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("no checkpoint appeared in time")
            time.sleep(0.05)
        os.killpg(proc.pid, signum)  # the whole group: DDP's worker processes too
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_stopped_by(stopped: subprocess.CompletedProcess, signum: int) -> None:
    """The run ended as `signum` makes it end: killed (SIGKILL), or having saved, with exit code 128 + signum
    and a line saying how to continue (SIGTERM, SIGINT)."""
    if signum == signal.SIGKILL:
        assert stopped.returncode == -signal.SIGKILL, stopped.stderr[-3000:]
        return
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    assert "continue with --ckpt_path last" in stopped.stdout
    assert "Traceback" not in stopped.stderr


def resume_last(args: list[str], root: Path) -> subprocess.CompletedProcess:
    """Run `llm_lit ARGS --ckpt_path last` in `root`, the folder of an interrupted run; it must end well."""
    resumed = run_cli([*args, "--ckpt_path", "last"], cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed


def interrupt_and_resume(args: list[str], root: Path, signum: int, after_step: int,
                         before_resuming: Optional[Callable[[dict], None]] = None) -> None:
    """Run `llm_lit ARGS` in `root`, send it `signum` once its last checkpoint holds step `after_step` or later
    (`run_and_interrupt`), check how it stopped, hand the last checkpoint to `before_resuming`, then resume it."""
    stopped = run_and_interrupt(args, root, root / LAST, signum, after_step=after_step)
    assert_stopped_by(stopped, signum)
    if before_resuming is not None:
        before_resuming(torch.load(root / LAST, map_location="cpu", weights_only=True))
    resume_last(args, root)


def assert_same_training_state(a: Path, b: Path) -> None:
    """Two checkpoints hold bitwise-equal weights, optimizer state, schedule and counters."""
    ca = torch.load(a, map_location="cpu", weights_only=True)
    cb = torch.load(b, map_location="cpu", weights_only=True)
    assert ca["global_step"] == cb["global_step"]
    assert ca["TextDataModule"] == cb["TextDataModule"]
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for name, tensor in ca["state_dict"].items():
        assert torch.equal(tensor, cb["state_dict"][name]), name
    _assert_equal_nested(ca["optimizer_states"], cb["optimizer_states"], "optimizer_states")
    _assert_equal_nested(ca["lr_schedulers"], cb["lr_schedulers"], "lr_schedulers")


def _assert_equal_nested(x: object, y: object, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and torch.equal(x, y), where
    elif isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), where
        for k in x:
            _assert_equal_nested(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert isinstance(y, (list, tuple)) and len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal_nested(u, v, f"{where}[{i}]")
    else:
        assert x == y, (where, x, y)


def logged(log_dir: Path, tag: str) -> dict[int, list[float]]:
    """Every value of a TensorBoard scalar under `log_dir` (all versions), grouped by step."""
    values: dict[int, list[float]] = {}
    for step, value in scalars(log_dir, tag):
        values.setdefault(step, []).append(value)
    return values


def assert_same_logs(reference: Path, resumed: Path, tags: tuple[str, ...], expect_steps: Optional[int] = None,
                     may_lack: tuple[int, ...] = ()) -> None:
    """Every value logged at a step by the interrupted + resumed runs equals the uninterrupted run's
    value at that step, and both cover the same steps (except possibly the steps in `may_lack`)."""
    for tag in tags:
        ref, got = logged(reference, tag), logged(resumed, tag)
        assert ref, tag
        assert set(got) <= set(ref) and set(ref) - set(got) <= set(may_lack), (tag, sorted(set(ref) ^ set(got)))
        for step, values in got.items():
            assert len(ref[step]) == 1, (tag, step)
            assert all(v == ref[step][0] for v in values), (tag, step, values, ref[step])
        if expect_steps is not None and tag == "train/loss":
            assert len(ref) == expect_steps
