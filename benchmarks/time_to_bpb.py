"""Wall time to a val bits-per-byte target, and val bpb at the end, of the default command as a new user runs it.

    python benchmarks/time_to_bpb.py                        # llm_lit fit --config configs/shakespeare.yaml
    python benchmarks/time_to_bpb.py --reference            # and the one-process recipe after it, for the ratio
    python benchmarks/time_to_bpb.py --target 2.05 --budget 590

Ours is the default command, unchanged, in a fresh folder (no token cache: tokenizer training and encoding
count, as for a new user); the wall time of each validation is its `time/elapsed_s` (seconds since the command
started). The reference (`--reference`) is the same config as one process of one thread with the batch of 16
it had before it used every core (`--trainer.devices 1 --data.batch_size 16`), run after ours on the same
machine. Each run uses the whole machine, so run this on a quiet one. Prints each run's validations, the first
at or below `--target`, the final val bpb, and the ratio of the times to the target (reference / ours).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Optional

from fit_runs import CONFIG, fit

REFERENCE = ["--trainer.devices", "1", "--data.batch_size", "16"]


def time_to(target: float, scalars: dict[str, list]) -> Optional[float]:
    """Seconds since the command started at the first validation with val/bpb <= target (None: never)."""
    seconds = dict(scalars.get("time/elapsed_s", []))
    return next((seconds[step] for step, bpb in scalars["val/bpb"] if bpb <= target and step in seconds), None)


def report(name: str, wall: float, scalars: dict[str, list], target: float) -> Optional[float]:
    """Print a run's validations and summary; returns its time to `target`."""
    seconds = dict(scalars.get("time/elapsed_s", []))
    print(f"{name}:")
    for step, bpb in scalars["val/bpb"]:
        print(f"  step {step:5d}  {seconds.get(step, float('nan')):6.1f} s  val bpb {bpb:.4f}")
    reached = time_to(target, scalars)
    final = scalars["val/bpb"][-1][1]
    print(f"  -> val bpb <= {target}: {'never' if reached is None else f'at {reached:.0f} s'}; final {final:.4f} "
          f"(command wall time {wall:.0f} s)\n", flush=True)
    return reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=2.10)
    parser.add_argument("--budget", type=float, default=None, help="--time_budget (default: the config's)")
    parser.add_argument("--reference", action="store_true", help="also run the one-process recipe, for the ratio")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="llm_lit_time_to_bpb_"))
    common = ["--config", str(CONFIG)] + (["--time_budget", str(args.budget)] if args.budget else [])
    ours = report("ours (llm_lit fit --config configs/shakespeare.yaml)", *fit(workdir / "ours", common), args.target)
    if args.reference:
        theirs = report("reference (one process: " + " ".join(REFERENCE) + ")",
                        *fit(workdir / "reference", [*common, *REFERENCE]), args.target)
        if ours and theirs:
            print(f"time to val bpb {args.target}: {ours:.0f} s vs {theirs:.0f} s, ratio {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
