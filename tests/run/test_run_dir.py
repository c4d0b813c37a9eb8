"""Run names and folders (`llm_lit.run.folders`): the default name, versions, what `--ckpt_path last` finds."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_lit.errors import UserError
from llm_lit.run.folders import (Run, check_run_name, checkpoint_version, default_run_name, fit_version, prediction_path, resolve_last)


@pytest.mark.parametrize("configs, train_files, expected", [
    (["configs/shakespeare.yaml"], None, "shakespeare"),
    (["configs/shakespeare.yaml"], ["data/my text.txt"], "shakespeare-my_text"),
    (["/abs/configs/debug.yaml", "imported/config.yaml"], ["a.txt", "b.txt", "c.txt"], "debug-a+2"),
    ([], ["novel.md"], "novel"),
    ([], None, "tinyshakespeare"),
])
def test_the_default_name_comes_from_the_first_config_and_the_corpus(configs, train_files, expected):
    assert default_run_name(configs, train_files) == expected


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_a_run_name_must_name_one_folder(name):
    with pytest.raises(UserError, match="cannot name a run folder"):
        check_run_name(name)


def _version(run: Run, number: int, last: bool) -> Path:
    folder = run.folder / f"version_{number}"
    (folder / "checkpoints").mkdir(parents=True)
    if last:
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    return folder


def test_versions_are_numbered_and_last_is_the_newest_that_has_a_last_checkpoint(tmp_path):
    run = Run(tmp_path / "runs", "debug")
    assert run.versions() == [] and run.new_version() == run.folder / "version_0" and run.last_checkpoint() is None
    v2 = _version(run, 2, last=True)
    _version(run, 10, last=False)  # a newer run stopped before its first checkpoint
    (run.folder / "version_x").mkdir()
    (run.folder / "notes.txt").write_text("not a version")
    assert [p.name for p in run.versions()] == ["version_2", "version_10"]  # by number, not by name
    assert run.new_version() == run.folder / "version_11"
    assert run.last_checkpoint() == v2 / "checkpoints" / "last.ckpt"


def test_a_checkpoint_belongs_to_the_version_folder_above_its_checkpoints_folder():
    assert checkpoint_version("runs/a/version_3/checkpoints/best-step9.ckpt") == Path("runs/a/version_3")
    assert checkpoint_version("imported/model.ckpt") is None
    assert checkpoint_version(None) is None


def test_where_fit_and_predict_write(tmp_path):
    run = Run(tmp_path / "runs", "debug")
    v0 = _version(run, 0, last=True)
    assert fit_version(run, None) == run.folder / "version_1"  # a fresh fit: a new version
    assert fit_version(run, str(v0 / "checkpoints" / "last.ckpt")) == v0  # a resume: the checkpoint's version
    assert fit_version(run, "imported/model.ckpt") == run.folder / "version_1"  # from a file of no run: a new one
    assert prediction_path(run, str(v0 / "checkpoints" / "last.ckpt")) == v0 / "predictions.jsonl"
    assert prediction_path(run, None) == run.folder / "predictions.jsonl"


def test_predictions_of_a_checkpoint_of_no_run_go_beside_it(tmp_path):
    run = Run(tmp_path / "runs", "tinyshakespeare")
    assert prediction_path(run, str(tmp_path / "x" / "last.ckpt")) == tmp_path / "x" / "predictions.jsonl"
    assert prediction_path(run, "imported/model.ckpt") == Path("imported") / "predictions.jsonl"


def test_predict_never_overwrites_earlier_predictions(tmp_path):
    run = Run(tmp_path / "runs", "debug")
    v0 = _version(run, 0, last=True)
    last = str(v0 / "checkpoints" / "last.ckpt")
    (v0 / "predictions.jsonl").write_text("{}\n")
    assert prediction_path(run, last) == v0 / "predictions-1.jsonl"
    (v0 / "predictions-1.jsonl").write_text("{}\n")
    assert prediction_path(run, last) == v0 / "predictions-2.jsonl"


def test_ckpt_path_last(tmp_path, capsys):
    run = Run(tmp_path / "runs", "debug")
    assert resolve_last(run, "fit", "other.ckpt") == "other.ckpt"
    assert resolve_last(run, "fit", "last") is None  # nothing to resume: fit starts a new run
    with pytest.raises(UserError, match="no run named 'debug' under .* has a last.ckpt"):
        resolve_last(run, "predict", "last")
    v0 = _version(run, 0, last=True)
    assert resolve_last(run, "validate", "last") == str(v0 / "checkpoints" / "last.ckpt")
