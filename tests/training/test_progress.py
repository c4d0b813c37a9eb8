"""The run's progress bar (`llm_lit.training.progress`): the version number, and Lightning's bar otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from llm_lit.training.budget import TimeBudget, time_budget_of
from llm_lit.training.progress import (RichRunProgressBar, TQDMRunProgressBar, _with_version, budgeted_total,
                                       run_progress_bar, version_number)


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


def _budget_run(steps: int) -> SimpleNamespace:
    """A stub trainer `steps` steps into a run of 100000 max_steps under a 590 s budget, 0.5 s a step after
    10 s of start-up (a fake clock, moved by the steps)."""
    clock = SimpleNamespace(now=10.0)
    budget = TimeBudget(590.0, clock=lambda: clock.now)
    trainer = SimpleNamespace(global_step=0, should_stop=False, sanity_checking=False, is_global_zero=False, world_size=1,
                              max_steps=100_000, accumulate_grad_batches=1, callbacks=[budget], logger=None,
                              progress_bar_metrics={}, loggers=[])
    budget.on_train_start(trainer, None)
    for _ in range(steps):  # one optimizer step, through the hooks Lightning calls
        budget.on_train_batch_start(trainer, None, None, 0)
        clock.now += 0.5
        trainer.global_step += 1
        budget.on_train_batch_end(trainer, None, None, None, 0)
    return trainer


def test_under_a_time_budget_the_bar_ends_where_the_budget_ends_the_run():
    trainer = _budget_run(100)
    budget = time_budget_of(trainer)
    total = budgeted_total(trainer, 100, 100_000)
    assert total == budget.horizon(100, 100_000) < 100_000
    seconds_left = (total - 100) * 0.5  # what the bar's time remaining shows: the budget's, not max_steps'
    assert 590 - budget.elapsed() - budget.reserve() - 0.5 <= seconds_left <= 590 - budget.elapsed()
    assert budgeted_total(trainer, 100, 150) == 150  # never more than the bar's own total
    assert budgeted_total(_budget_run(0), 0, 100_000) is None  # no step timed yet: the bar is left as it is
    assert budgeted_total(SimpleNamespace(callbacks=[], max_steps=10, global_step=0), 0, 10) is None  # no budget


def test_the_tqdm_bar_takes_the_budgeted_total():
    from tqdm import tqdm

    trainer = _budget_run(100)
    bar = TQDMRunProgressBar()
    bar._train_progress_bar = tqdm(total=100_000, disable=True)
    bar.on_train_batch_end(trainer, SimpleNamespace(), None, None, 99)
    assert bar.train_progress_bar.total == budgeted_total(trainer, 100, 100_000) < 100_000


def test_the_rich_bar_takes_the_budgeted_total():
    progress = pytest.importorskip("rich.progress")
    trainer = _budget_run(100)
    bar = RichRunProgressBar()
    bar.progress = progress.Progress(disable=True)
    bar.train_progress_bar_id = bar.progress.add_task("Epoch 0", total=100_000)
    bar._update_metrics = lambda trainer, pl_module: None  # (metrics need a whole Trainer; not what is tested)
    bar.refresh = lambda hard=False: None  # (Lightning's Progress subclass refreshes; rich's plain one cannot)
    bar.on_train_batch_end(trainer, SimpleNamespace(), None, None, 99)
    assert bar.progress.tasks[0].total == budgeted_total(trainer, 100, 100_000) < 100_000
