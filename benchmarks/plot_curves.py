"""Plot the train/val loss curves (and val bits per byte) of a run from its TensorBoard logs.

    python benchmarks/plot_curves.py [LOG_DIR] [--out docs/curves.png]

LOG_DIR defaults to the newest `lightning_logs/version_*` folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of every event file under `log_dir`: tag -> sorted (step, value) pairs."""
    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in out.items()}


def newest_run(root: Path = Path("lightning_logs")) -> Path:
    runs = sorted(root.glob("version_*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"No runs under {root}/; pass the log folder of a run.")
    return runs[-1]


def plot(scalars: dict[str, list[tuple[int, float]]], out: Path, title: str) -> None:
    """Loss (nats/token) on the left axis, val bits per byte on the right; saved as a PNG at `out`."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for tag, style in (("train/loss", "-"), ("val/loss", "o-")):
        if tag in scalars:
            steps, values = zip(*scalars[tag])
            ax.plot(steps, values, style, label=tag)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "val/bpb" in scalars:
        right = ax.twinx()
        steps, values = zip(*scalars["val/bpb"])
        right.plot(steps, values, "s--", color="tab:green", label="val/bpb")
        right.axhline(2.71, color="tab:red", lw=0.8, ls=":", label="nanoGPT char-level CPU recipe (2.71 bpb)")
        right.set_ylabel("val bits per byte")
        h, lab = right.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
        title += f" — final val bpb {values[-1]:.3f}"
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"Wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log_dir", nargs="?", type=Path, help="a run's TensorBoard folder")
    p.add_argument("--out", type=Path, default=Path("docs/curves.png"))
    p.add_argument("--title", default="llm_lit fit --config configs/shakespeare.yaml")
    args = p.parse_args()
    log_dir = args.log_dir or newest_run()
    plot(read_scalars(log_dir), args.out, args.title)


if __name__ == "__main__":
    main()
