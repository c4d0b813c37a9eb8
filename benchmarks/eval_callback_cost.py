"""The in-training multiple-choice eval's share of a run's wall time, and its accuracy curve.

Runs `llm_lit fit` on the default config (configs/shakespeare.yaml, which turns `MultipleChoiceEval` on
with the next-line task) for a fixed number of steps, reads the seconds each evaluation printed
(`eval/next_line at step N: acc A, acc_norm B (... ; S s)`) and the run's wall time, and prints both
with their ratio (the eval's share of the run), then the accuracy at each validation (chance is 0.25).

    python benchmarks/eval_callback_cost.py [--steps 1000] [--config configs/shakespeare.yaml]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_LINE = re.compile(r"eval/(\S+) at step (\d+): acc ([\d.]+), acc_norm ([\d.]+) \(.*; ([\d.]+) s\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps of the run (no time budget)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "shakespeare.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "llm_lit", "fit", "--config", args.config, "--time_budget", "null",
                              "--trainer.max_steps", str(args.steps), "--trainer.enable_progress_bar", "false"],
                             cwd=scratch, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"error: the fit failed:\n{run.stderr[-3000:]}")
    evals = [m.groups() for m in EVAL_LINE.finditer(run.stdout)]
    if not evals:
        sys.exit("error: the run printed no eval line; use a config with MultipleChoiceEval among its callbacks.")
    spent = sum(float(seconds) for *_, seconds in evals)
    print(f"{args.steps} steps of {Path(args.config).name}: run {wall:.1f} s wall, of which the eval {spent:.1f} s "
          f"in {len(evals)} evaluations")
    print(f"eval / run wall time: {100 * spent / wall:.1f}%")
    for name, step, acc, acc_norm, _ in evals:
        print(f"  {name} step {step:>5}: acc {acc}, acc_norm {acc_norm}")


if __name__ == "__main__":
    main()
