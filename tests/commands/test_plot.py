"""`llm_lit plot`: the newest run that logged a loss, drawn next to its logs (or at --out), one-line errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from llm_lit.commands.cli import main
from llm_lit.commands.plot import newest_run_with_losses, one_per_step, read_scalars


def _log(folder: Path, scalars: dict[str, list[tuple[int, float]]], mtime: float) -> Path:
    """Write TensorBoard scalars into a new event file in `folder`, dated `mtime`."""
    before = set(folder.glob("events.out.tfevents.*"))
    writer = SummaryWriter(str(folder))
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()
    for events in set(folder.glob("events.out.tfevents.*")) - before:
        os.utime(events, (mtime, mtime))
    return folder


LOSSES = {"train/loss": [(0, 5.0), (10, 4.0), (20, 3.0)], "val/loss": [(10, 4.2), (20, 3.4)],
          "val/bpb": [(10, 2.75), (20, 2.5)]}


@pytest.fixture()
def runs(tmp_path) -> Path:
    """runs/a/version_0 (older, with losses), runs/b/version_0 (newest with losses), runs/b/version_1 (newest
    of all, but it stopped before its first logging step: only a learning rate)."""
    root = tmp_path / "runs"
    _log(root / "a" / "version_0", LOSSES, mtime=1_000)
    _log(root / "b" / "version_0", {"train/loss": [(0, 6.0), (10, 5.0)]}, mtime=2_000)
    _log(root / "b" / "version_1", {"lr": [(0, 0.001)]}, mtime=3_000)
    return root


def test_the_newest_folder_with_a_loss_is_chosen(runs):
    assert newest_run_with_losses(runs)[0] == runs / "b" / "version_0"
    assert newest_run_with_losses(runs / "a")[0] == runs / "a" / "version_0"
    folder, scalars = newest_run_with_losses(runs / "a" / "version_0")
    assert folder == runs / "a" / "version_0" and scalars["val/bpb"] == [(10, 2.75), (20, 2.5)]


def test_a_step_logged_twice_keeps_the_value_written_last(tmp_path):
    folder = tmp_path / "v"
    _log(folder, {"train/loss": [(0, 5.0), (10, 4.0)]}, mtime=1_000)
    _log(folder, {"train/loss": [(10, 3.875), (20, 3.0)]}, mtime=2_000)  # a resumed run, in the same folder
    points = read_scalars(folder)["train/loss"]
    assert sorted(points) == [(0, 5.0), (10, 3.875), (10, 4.0), (20, 3.0)]
    assert one_per_step(points) == [(0, 5.0), (10, 3.875), (20, 3.0)]


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 10_000


def test_plot_writes_next_to_the_logs_by_default_and_where_asked(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default LOG_DIR is runs/, where fit writes
    assert main(["plot"]) == 0
    assert _png(runs / "b" / "version_0" / "curves.png")
    assert "Wrote runs/b/version_0/curves.png" in capsys.readouterr().out
    out = tmp_path / "figures" / "a.png"
    assert main(["plot", str(runs / "a"), "--out", str(out), "--title", "run a", "--baseline_bpb", "2.71",
                 "--baseline_label", "nanoGPT"]) == 0
    assert _png(out) and not (runs / "a" / "version_0" / "curves.png").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.png"]  # no temporary file left


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "'nowhere' does not exist; pass the log folder of a run"),
    (lambda root: _log(root / "nowhere" / "v", {"lr": [(0, 0.1)]}, 1_000),
     "No TensorBoard logs with a train or val loss"),
])
def test_nothing_to_plot_is_one_line(tmp_path, monkeypatch, capsys, setup, message):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    assert main(["plot", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_without_matplotlib_the_message_names_the_extra(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    assert main(["plot", str(runs)]) == 2
    assert "pip install 'llm_lit[plot]'" in capsys.readouterr().err


def test_several_runs_are_overlaid_one_legend_entry_each(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _log(runs / "c" / "version_0", {**LOSSES, "val/bpb": [(10, 2.6), (20, 2.4)]}, mtime=4_000)
    assert main(["plot", str(runs / "a"), str(runs / "c")]) == 0
    assert _png(tmp_path / "runs" / "comparison.png")
    assert "val/bpb of a, c" in capsys.readouterr().out
    from llm_lit.commands import plot as plot_module

    drawn = {}
    monkeypatch.setattr(plot_module, "draw_overlay", lambda runs, metric, out, title, x_label: drawn.update(
        runs=runs, metric=metric, x_label=x_label))
    assert main(["plot", str(runs / "a"), str(runs / "c"), "--metric", "val/loss"]) == 0
    assert list(drawn["runs"]) == ["a", "c"] and drawn["metric"] == "val/loss"


@pytest.mark.parametrize("folders, labels", [
    (["sweep/alibi-seed1/lightning_logs/version_0", "sweep/rope-seed1/lightning_logs/version_0"],
     ["alibi-seed1", "rope-seed1"]),
    (["runs/a/version_0", "runs/a/version_1"], ["version_0", "version_1"]),
    (["runs/a/version_0", "runs/b/version_1"], ["a/version_0", "b/version_1"]),
    (["x/logs", "y/logs"], ["x", "y"]),
])
def test_legend_labels_drop_the_folders_every_run_shares(tmp_path, folders, labels):
    from llm_lit.commands.plot import run_labels

    assert run_labels([tmp_path / f for f in folders]) == labels


def test_against_wall_time_each_validation_sits_at_its_elapsed_seconds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    timed = _log(tmp_path / "runs" / "t" / "version_0", {**LOSSES, "time/elapsed_s": [(10, 31.5), (20, 58.0)]}, 1_000)
    from llm_lit.commands.plot import against_time

    moved = against_time(read_scalars(timed), "t")
    assert moved["val/bpb"] == [(31.5, 2.75), (58.0, 2.5)]
    assert moved["train/loss"] == [(31.5, 4.0), (58.0, 3.0)]  # only the steps that have a time
    assert main(["plot", str(timed), "--x", "time"]) == 0 and _png(timed / "curves.png")
    untimed = _log(tmp_path / "runs" / "u" / "version_0", LOSSES, 2_000)
    assert main(["plot", str(untimed), "--x", "time"]) == 2
    assert "hold no time/elapsed_s" in capsys.readouterr().err


def test_a_metric_one_run_lacks_is_one_line(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(runs / "a"), str(runs / "b")]) == 2
    err = capsys.readouterr().err
    assert "hold no val/bpb" in err and "--metric" in err
