"""The run's progress bar (`llm_lit.training.progress`): the version number, and Lightning's bar otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from llm_lit.training.progress import RichRunProgressBar, TQDMRunProgressBar, _with_version, run_progress_bar, version_number


@pytest.mark.parametrize("version, number", [("version_3", 3), ("version_12", 12), (7, 7), ("my-run", None), (None, None)])
def test_the_version_number(version, number):
    trainer = SimpleNamespace(logger=SimpleNamespace(version=version))
    assert version_number(trainer) == number


def test_v_num_is_the_version_number_or_nothing():
    trainer = SimpleNamespace(logger=SimpleNamespace(version="version_10"))
    assert _with_version({"v_num": "on_10", "loss": 1.0}, trainer) == {"v_num": "10", "loss": 1.0}
    assert _with_version({"v_num": "-run", "loss": 1.0}, SimpleNamespace(logger=SimpleNamespace(version="my-run"))) \
        == {"loss": 1.0}
    assert _with_version({}, SimpleNamespace(logger=None)) == {}


def test_the_bar_is_the_one_lightning_would_pick():
    try:
        import rich  # noqa: F401
        expected = RichRunProgressBar
    except ImportError:
        expected = TQDMRunProgressBar
    assert isinstance(run_progress_bar(), expected)
    assert issubclass(TQDMRunProgressBar, TQDMProgressBar)
