"""`llm_lit plot [LOG_DIR ...]`: a run's train/val loss and val bits per byte, from its TensorBoard logs, as a
PNG; with several runs, one metric of each overlaid (one legend entry a run).

    llm_lit plot                               # the newest run under runs/ that logged a loss
    llm_lit plot runs/shakespeare              # the newest version of that run
    llm_lit plot runs/shakespeare/version_0 --out curves.png
    llm_lit plot runs/rope runs/alibi --x time # val/bpb of both against wall time -> runs/comparison.png

The figure of one run goes next to the logs it was drawn from (`<version>/curves.png`), that of
several to `runs/comparison.png`, unless `--out` says otherwise, so nothing in the repository is
overwritten. `--x time` puts the seconds since each run's command started on the x axis (the
`time/elapsed_s` logged at each validation), so only the validation metrics are drawn. It needs matplotlib, an optional
dependency (`pip install 'llm_lit[plot]'`; the README's first command installs it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence

from llm_lit.errors import UserError
from llm_lit.run.folders import DEFAULT_OUT_DIR
from tokenizer.atomic import atomic_path

LOSS_TAGS = ("train/loss", "val/loss")
EVENT_FILES = "events.out.tfevents.*"
FIGURE = "curves.png"
COMPARISON = "comparison.png"
ELAPSED_TAG = "time/elapsed_s"
Points = list[tuple[float, float]]


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


def against_time(scalars: dict[str, Points], where: str) -> dict[str, Points]:
    """`scalars` with each step replaced by the run's wall time then (`time/elapsed_s`); points of steps without
    one (train metrics between validations) are left out."""
    seconds = dict(one_per_step(scalars.get(ELAPSED_TAG, [])))
    if not seconds:
        raise UserError(f"The logs of '{where}' hold no {ELAPSED_TAG} (written at each validation by llm_lit fit); "
                        "plot them against steps (leave out --x time).")
    return {tag: [(seconds[step], value) for step, value in one_per_step(points) if step in seconds]
            for tag, points in scalars.items() if tag != ELAPSED_TAG}


def new_figure() -> Any:
    """An empty matplotlib figure (8 x 4.5 in), or one line saying how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("llm_lit plot needs matplotlib, which is not installed; install it with "
                        "pip install 'llm_lit[plot]' (or pip install matplotlib).") from None
    return Figure(figsize=(8, 4.5), dpi=120)


def draw(scalars: dict[str, Points], out: Path, title: str, baseline_bpb: Optional[float] = None,
         baseline_label: str = "baseline", x_label: str = "optimizer step") -> None:
    """Loss (nats/token) on the left axis, val bits per byte on the right; written atomically as a PNG at `out`."""
    figure = new_figure()
    ax = figure.subplots()
    for tag, style in (("train/loss", "-"), ("val/loss", "o-")):
        if scalars.get(tag):
            ax.plot(*zip(*one_per_step(scalars[tag])), style, label=tag)
    ax.set_xlabel(x_label)
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if scalars.get("val/bpb"):
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


def draw_overlay(runs: dict[str, dict[str, Points]], metric: str, out: Path, title: str, x_label: str) -> None:
    """`metric` of each run (label -> its scalars) on one axis, one legend entry a run; a PNG at `out`."""
    figure = new_figure()
    ax = figure.subplots()
    for label, scalars in runs.items():
        points = one_per_step(scalars.get(metric, []))
        if not points:
            raise UserError(f"The logs of '{label}' hold no {metric}; pick a metric every run logged with --metric "
                            "(e.g. val/bpb or val/loss).")
        ax.plot(*zip(*points), "o-", markersize=3, label=f"{label} ({points[-1][1]:.3f})")
    ax.set_xlabel(x_label)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png")


def run_labels(folders: list[Path]) -> list[str]:
    """Short distinct legend labels for run folders: their paths without the leading and trailing folders that
    every run shares (`runs/a/version_0`, `runs/c/version_0` -> `a`, `c`)."""
    if len(folders) == 1:
        return [str(folders[0])]
    shared = Path(os.path.commonpath([str(f.resolve()) for f in folders]))
    parts = [f.resolve().relative_to(shared).parts for f in folders]
    while all(len(p) > 1 for p in parts) and len({p[-1] for p in parts}) == 1:
        parts = [p[:-1] for p in parts]
    labels = [str(Path(*p)) if p else "" for p in parts]
    return labels if all(labels) and len(set(labels)) == len(labels) else [str(f) for f in folders]


def plot(log_dirs: Sequence[str] = (), out: Optional[str] = None, title: Optional[str] = None,
         baseline_bpb: Optional[float] = None, baseline_label: str = "baseline", x: Literal["step", "time"] = "step",
         metric: str = "val/bpb") -> Path:
    """Plot a run's train/val loss and val bits per byte from its TensorBoard logs as a PNG, or, given several
    runs, one metric of each on one axis.

    Args:
        log_dirs: Runs' version folders, run folders or folders of runs; of each, the newest folder at or under it
            whose logs hold a loss is plotted (default: runs/).
        out: Where to write the PNG (default: curves.png in the folder of the one run's logs; runs/comparison.png
            for several).
        title: Title of the figure (default: the folder, or the metric compared).
        baseline_bpb: One run: draw a horizontal line at this val bits-per-byte figure, e.g. a reference run's.
        baseline_label: Legend label of that line.
        x: What the x axis shows: the optimizer step, or the seconds since each run's command started (at each
            validation: only validation metrics are drawn).
        metric: Several runs: the metric compared (default val/bpb).
    """
    found = [newest_run_with_losses(d) for d in (list(log_dirs) or [DEFAULT_OUT_DIR])]
    x_label = "optimizer step" if x == "step" else "wall time since the command started (s)"
    shown = [(folder, against_time(scalars, str(folder)) if x == "time" else scalars) for folder, scalars in found]
    if len(shown) == 1:
        folder, scalars = shown[0]
        path = Path(out) if out else folder / FIGURE
        draw(scalars, path, title or str(folder), baseline_bpb, baseline_label, x_label)
        print(f"Wrote {path} (the curves of {folder}).")
        return path
    folders = [folder for folder, _ in shown]
    path = Path(out) if out else Path(DEFAULT_OUT_DIR) / COMPARISON
    runs = dict(zip(run_labels(folders), (scalars for _, scalars in shown)))
    draw_overlay(runs, metric, path, title or f"{metric} of {len(runs)} runs", x_label)
    print(f"Wrote {path} ({metric} of {', '.join(runs)}).")
    return path


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit plot [LOG_DIR] ...`: parse `argv` with jsonargparse and plot; returns the exit code."""
    from llm_lit.commands.parsing import function_parser, parse

    parser = function_parser("llm_lit plot", plot, skip={"log_dirs"})
    parser.add_argument("log_dirs", nargs="*", default=[],
                        help="Runs' version folders, run folders or folders of runs (default: runs/); several are "
                             "overlaid.")
    plot(**parse(parser, argv).as_dict())
    return 0
