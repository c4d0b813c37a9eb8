"""The kill-anywhere sweep: SIGKILL a `fit` at evenly spread moments of its run, resume it with
`--ckpt_path last`, and compare every tensor of every checkpoint and every logged scalar with an
uninterrupted run.

Each attempt gets a fresh token cache, so kills also land in tokenizer training and encoding. A
quarter of the moments are spread evenly over the start of the uninterrupted run (process start to
its logger's set-up), the rest evenly over its training (set-up to exit), each measured on the
attempt itself (see `sweep`). A kill that comes after the process already ended leaves a whole run,
which must equal the reference too (the sweep reports how many kills landed).

    python tests/faults/kill_sweep.py --kills 20            # the 40-step debug run
    python tests/faults/kill_sweep.py --kills 10 --ddp      # a 2-process DDP run

What "equal" means: every tensor anywhere in each checkpoint file (weights, optimizer state, schedule,
RNG states, the train loss's running mean, ...) is bitwise equal, and so is everything else in it but
the loops' progress counters (they count the batches a killed process had fetched too), the run's
wall time (`ElapsedTime`) and the checksum of "everything else", which covers them; the same checkpoint files exist; every logged
scalar has the same steps and, except the wall-clock `perf/*` rates and `time/*`, the same values (a step logged
by a killed attempt and again after the resume must hold the same value both times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "faults")]

from cli_helpers import DEBUG_CONFIG, cli_env, run_cli  # noqa: E402

#: A 40-step debug run: validation every 10 steps, checkpoints every 5, logs every 4 (so most kills fall between
#: logging steps), dropout on (its randomness must be restored too).
SINGLE = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1",
          "--trainer.max_steps", "40", "--trainer.log_every_n_steps", "4", "--model.config.dropout", "0.1"]
#: A 2-process DDP run (gloo on the CPU) of 20 steps.
DDP = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1",
       "--trainer.max_steps", "20", "--trainer.log_every_n_steps", "4", "--model.config.dropout", "0.1",
       "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "8", "--model.sample_prompts", "[]"]
#: Checkpoint entries that may differ between an interrupted and an uninterrupted run (see the module docstring).
NOT_COMPARED = {"loops", "llm_lit_checksums", "ElapsedTime"}
#: Logged tags whose values are wall-clock rates (only their steps are compared).
TIMED = ("perf/", "time/")


@dataclass
class Attempt:
    """One kill: when it was sent, whether it landed, and the differences found after the resume."""

    at_s: float
    landed: bool
    last_step_before_resume: int
    differences: list[str] = field(default_factory=list)


def _run(args: list[str], cwd: Path, kill: Optional[tuple[float, float]] = None,
         timeout: float = 900) -> tuple[int, float, Optional[float]]:
    """Run `python -m llm_lit ARGS` in `cwd` (a new process group). With `kill = (a, b)`, SIGKILL the group `a`
    seconds after its start, or, when `a` is None, `b` seconds after its run's logger was set up (its events
    file appeared: training is about to start). Returns (exit code, wall seconds, seconds until the events
    file appeared, or None)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    set_up: Optional[float] = None
    deadline = None if kill is None or kill[0] is None else started + kill[0]
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if set_up is None and list(cwd.glob("runs/*/version_*/events.out.tfevents.*")):
                set_up = now - started
                if kill is not None and kill[0] is None:
                    deadline = now + kill[1]
            if deadline is not None and now >= deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if kill is None and proc.returncode != 0:
        raise AssertionError(f"llm_lit {' '.join(args)} failed in {cwd}:\n{err[-3000:]}")
    return proc.returncode, time.monotonic() - started, set_up


def _checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"]) if path.is_file() else -1


def compare_checkpoints(reference: Path, other: Path) -> list[str]:
    """The differences between the checkpoint folders of two runs (every tensor; see NOT_COMPARED)."""
    names = sorted(p.name for p in reference.glob("*.ckpt"))
    found = sorted(p.name for p in other.glob("*.ckpt"))
    differences = [] if names == found else [f"checkpoint files {names} vs {found}"]
    for name in sorted(set(names) & set(found)):
        a = _placeless(torch.load(reference / name, map_location="cpu", weights_only=True), reference)
        b = _placeless(torch.load(other / name, map_location="cpu", weights_only=True), other)
        _compare(a, b, name, differences)
    return differences


def _placeless(value: Any, folder: Path) -> Any:
    """`value` with the run's own folder in every string (the checkpoint callbacks record paths) written as
    `<run>/checkpoints`: two runs in two folders (or versions) record the same files."""
    run = str(folder.resolve().parent.parent)  # <root>/runs/<name>/version_N/checkpoints -> <root>/runs/<name>
    if isinstance(value, str):
        return re.sub(r"/version_\d+/", "/", value.replace(run, "<run>"))
    if isinstance(value, dict):
        return {_placeless(k, folder): _placeless(v, folder) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_placeless(v, folder) for v in value)
    return value


def _compare(a: Any, b: Any, where: str, differences: list[str]) -> None:
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)):
            differences.append(f"{where}: tensors differ")
    elif isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            differences.append(f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b or {}))}")
            return
        for key in a:
            if key not in NOT_COMPARED:
                _compare(a[key], b[key], f"{where}/{key}", differences)
    elif isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            differences.append(f"{where}: lengths differ")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{where}/{i}", differences)
    elif a != b and not (isinstance(a, float) and a != a and b != b):  # (NaN == NaN here)
        differences.append(f"{where}: {a!r} vs {b!r}")


def compare_logs(reference: Path, other: Path) -> list[str]:
    """The differences between every scalar two runs logged under their `runs/` folders."""
    from llm_lit.commands.plot import read_scalars

    ref, got = read_scalars(reference), read_scalars(other)
    differences = [] if set(ref) == set(got) else [f"tags {sorted(ref)} vs {sorted(got)}"]
    for tag in sorted(set(ref) & set(got)):
        ref_steps: dict[int, list[float]] = {}
        for step, value in ref[tag]:
            ref_steps.setdefault(step, []).append(value)
        got_steps: dict[int, list[float]] = {}
        for step, value in got[tag]:
            got_steps.setdefault(step, []).append(value)
        if set(ref_steps) != set(got_steps):
            differences.append(f"{tag}: steps {sorted(set(ref_steps) ^ set(got_steps))} in one run only")
        if tag.startswith(TIMED):
            continue
        for step in sorted(set(ref_steps) & set(got_steps)):  # (`epoch` is logged with train and val metrics alike)
            expected = ref_steps[step]
            if len(set(expected)) != 1 or set(got_steps[step]) != set(expected):
                differences.append(f"{tag} at step {step}: {got_steps[step]} vs {expected}")
    return differences


def sweep(args: list[str], kills: int, root: Path, log=print) -> tuple[float, list[Attempt]]:
    """Run the sweep in `root`; returns the uninterrupted run's wall time and each attempt.

    A quarter of the kills are spread evenly over the start (imports, tokenizer training, encoding, setting
    up), the rest evenly over training (from the moment the run's logger is set up to the end of the
    uninterrupted run), each measured on the attempt itself, so a busy machine does not push them all into
    the start."""
    reference = root / "reference"
    reference.mkdir(parents=True)
    _, wall, set_up = _run([*args, "--data.cache_dir", str(reference / "cache")], reference)
    set_up = set_up if set_up is not None else wall / 4
    log(f"uninterrupted run: {wall:.1f} s (logger set up after {set_up:.1f} s)")
    early = max(1, kills // 4)
    attempts = []
    for i in range(kills):
        folder = root / f"kill-{i:02d}"
        folder.mkdir()
        if i < early:
            kill, at, when = (set_up * (i + 0.5) / early, 0.0), set_up * (i + 0.5) / early, "after start"
        else:
            j, n = i - early, kills - early
            at = (wall - set_up) * (j + 0.5) / n
            kill, when = (None, at), "into training"
        run = [*args, "--data.cache_dir", str(folder / "cache")]
        code, _, _ = _run(run, folder, kill=kill)
        landed = code == -signal.SIGKILL
        lasts = sorted(folder.glob("runs/*/version_*/checkpoints/last.ckpt"))
        before = _checkpoint_step(lasts[-1]) if lasts else -1
        _run([*run, "--ckpt_path", "last"], folder)
        versions = sorted(folder.glob("runs/*/version_*/checkpoints"))
        checkpoints = next((v for v in reversed(versions) if (v / "last.ckpt").is_file()), versions[-1])
        reference_checkpoints = next(reference.glob("runs/*/version_0/checkpoints"))
        attempt = Attempt(round(at, 2), landed, before,
                          compare_checkpoints(reference_checkpoints, checkpoints)
                          + compare_logs(reference / "runs", folder / "runs"))
        attempts.append(attempt)
        log(f"kill {i + 1:2d}/{kills} {at:5.1f} s {when}: {'killed' if landed else 'had ended'}, last.ckpt at step "
            f"{before}; {len(attempt.differences)} differences" + (f": {attempt.differences[:3]}" if attempt.differences else ""))
    return wall, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--ddp", action="store_true", help="sweep a 2-process DDP run instead")
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a new temporary one)")
    options = parser.parse_args()
    import tempfile

    root = options.root or Path(tempfile.mkdtemp(prefix="kill-sweep-"))
    wall, attempts = sweep(DDP if options.ddp else SINGLE, options.kills, root)
    landed = sum(a.landed for a in attempts)
    differing = [a for a in attempts if a.differences]
    print(json.dumps({"run": "ddp" if options.ddp else "single", "wall_s": round(wall, 1), "kills": len(attempts),
                      "landed": landed, "resumed_from_steps": [a.last_step_before_resume for a in attempts],
                      "with_differences": len(differing)}))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
