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
