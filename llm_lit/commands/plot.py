"""`llm_lit plot [LOG_DIR]`: a run's train/val loss and val bits per byte, from its TensorBoard logs, as a PNG.

    llm_lit plot                               # the newest run under runs/ that logged a loss
    llm_lit plot runs/shakespeare              # the newest version of that run
    llm_lit plot runs/shakespeare/version_0 --out curves.png

The figure goes next to the logs it was drawn from (`<version>/curves.png`) unless `--out`
says otherwise, so nothing in the repository is overwritten. It needs matplotlib, an optional
dependency (`pip install 'llm_lit[plot]'`; the README's first command installs it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from llm_lit.errors import UserError
from llm_lit.run.folders import DEFAULT_OUT_DIR
from tokenizer.atomic import atomic_path

LOSS_TAGS = ("train/loss", "val/loss")
EVENT_FILES = "events.out.tfevents.*"
FIGURE = "curves.png"
Points = list[tuple[int, float]]


def read_scalars(log_dir: str | os.PathLike) -> dict[str, Points]:
    """Every scalar of every event file at or under `log_dir`: tag -> `(step, value)` pairs sorted by step.

    A step logged twice (by a run killed after logging it and resumed from an earlier
    checkpoint) appears twice, the later-written value last.
    """
    return _read_event_files(Path(log_dir).rglob(EVENT_FILES))


def _started(events: Path) -> tuple[int, float]:
    """When an event file was started: the second in its name (`events.out.tfevents.<second>.<host>...`), then
    its modification time (for files started within the same second)."""
    second = events.name.split(".")[3]
    return int(second) if second.isdigit() else 0, events.stat().st_mtime


def _read_event_files(files: Iterable[Path]) -> dict[str, Points]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, Points] = {}
    for events in sorted(files, key=_started):  # oldest first
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep every point
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            out.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return {tag: sorted(points, key=lambda p: p[0]) for tag, points in out.items()}  # stable: later last


def newest_run_with_losses(root: str | os.PathLike) -> tuple[Path, dict[str, Points]]:
    """The newest folder at or under `root` whose event files hold a loss, with its scalars.

    Newest means the folder whose latest event file was written last; folders without a
    loss (a run stopped before its first logging step) are passed over.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"'{root}' does not exist; pass the log folder of a run (e.g. {DEFAULT_OUT_DIR}/shakespeare), "
                        "or train one first with llm_lit fit.")
    written: dict[Path, float] = {}
    for events in root.rglob(EVENT_FILES):
        written[events.parent] = max(written.get(events.parent, 0.0), events.stat().st_mtime)
    for folder in sorted(written, key=written.__getitem__, reverse=True):
        scalars = _read_event_files(folder.glob(EVENT_FILES))
        if any(tag in scalars for tag in LOSS_TAGS):
            return folder, scalars
    raise UserError(f"No TensorBoard logs with a train or val loss under '{root}'; pass the log folder of a run "
                    "that has reached its first logging step.")


def one_per_step(points: Points) -> Points:
    """`points` with one value per step, the one written last."""
    return sorted(dict(points).items())


def draw(scalars: dict[str, Points], out: Path, title: str, baseline_bpb: Optional[float] = None,
         baseline_label: str = "baseline") -> None:
    """Loss (nats/token) on the left axis, val bits per byte on the right; written atomically as a PNG at `out`."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("llm_lit plot needs matplotlib, which is not installed; install it with "
                        "pip install 'llm_lit[plot]' (or pip install matplotlib).") from None
    figure = Figure(figsize=(8, 4.5), dpi=120)
    ax = figure.subplots()
    for tag, style in (("train/loss", "-"), ("val/loss", "o-")):
        if tag in scalars:
            ax.plot(*zip(*one_per_step(scalars[tag])), style, label=tag)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "val/bpb" in scalars:
        right = ax.twinx()
        steps, values = zip(*one_per_step(scalars["val/bpb"]))
        right.plot(steps, values, "s--", color="tab:green", label="val/bpb")
        if baseline_bpb is not None:
            right.axhline(baseline_bpb, color="tab:red", lw=0.8, ls=":", label=f"{baseline_label} ({baseline_bpb} bpb)")
        right.set_ylabel("val bits per byte")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        title += f" — final val bpb {values[-1]:.3f}"
    ax.legend(handles, labels, loc="center right", fontsize=8)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png")


def plot(log_dir: Optional[str] = None, out: Optional[str] = None, title: Optional[str] = None,
         baseline_bpb: Optional[float] = None, baseline_label: str = "baseline") -> Path:
    """Plot a run's train/val loss and val bits per byte from its TensorBoard logs as a PNG.

    Args:
        log_dir: A run's version folder, a run folder or a folder of runs; the newest folder at or under it
            whose logs hold a loss is plotted (default: runs/).
        out: Where to write the PNG (default: curves.png in the folder of the logs it shows).
        title: Title of the figure (default: that folder).
        baseline_bpb: Draw a horizontal line at this val bits-per-byte figure, e.g. a reference run's.
        baseline_label: Legend label of that line.
    """
    folder, scalars = newest_run_with_losses(log_dir or DEFAULT_OUT_DIR)
    path = Path(out) if out else folder / FIGURE
    draw(scalars, path, title or str(folder), baseline_bpb, baseline_label)
    print(f"Wrote {path} (the curves of {folder}).")
    return path


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit plot [LOG_DIR] ...`: parse `argv` with jsonargparse and plot; returns the exit code."""
    from llm_lit.commands.parsing import function_parser, parse

    parser = function_parser("llm_lit plot", plot, skip={"log_dir"})
    parser.add_argument("log_dir", nargs="?", default=DEFAULT_OUT_DIR,
                        help="A run's version folder, a run folder or a folder of runs.")
    plot(**parse(parser, argv).as_dict())
    return 0
