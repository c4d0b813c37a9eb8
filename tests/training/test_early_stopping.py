"""A run stops early, and says why, when Lightning's EarlyStopping sees val loss stop improving, and what it
leaves is a normal finished run: a last checkpoint at the step it stopped. The default config uses
`DecayEarlyStopping`, which counts only the validations made in the learning rate's decay."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, REPO, run_cli
from llm_lit.optim.schedule import cosine_warmup_scheduler, peak_relative_scheduler, wsd_lr_at
from llm_lit.training.decay_early_stopping import lr_has_left_its_peak

#: min_delta 100: no validation after the first counts as an improvement, so patience 1 stops at the second.
NEVER_IMPROVES = {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
                  "init_args": {"monitor": "val/loss", "patience": 1, "min_delta": 100.0, "verbose": True}}


@pytest.mark.parametrize("name", ["shakespeare", "enwiki"])
def test_the_shipped_configs_stop_after_two_decay_validations_without_improvement(name: str) -> None:
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    stops = [c for c in config["trainer"]["callbacks+"] if "EarlyStopping" in c["class_path"]]
    assert [c["class_path"] for c in stops] == ["llm_lit.training.decay_early_stopping.DecayEarlyStopping"]
    assert [c["init_args"] for c in stops] == [{"monitor": "val/loss", "patience": 2, "verbose": True}]


def _trainer_at(step: int, scheduler) -> SimpleNamespace:  # noqa: ANN001 - a LambdaLR or None
    """What `lr_has_left_its_peak` reads of a Trainer: its step and its schedulers."""
    configs = [] if scheduler is None else [SimpleNamespace(scheduler=scheduler)]
    return SimpleNamespace(global_step=step, lr_scheduler_configs=configs)


def test_the_lr_has_left_its_peak_only_in_the_decay() -> None:
    def optimizer() -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    wsd = peak_relative_scheduler(optimizer(), lambda it: wsd_lr_at(it, 1.0, 0.1, 10, 60, 100), 1.0)
    left = {step: lr_has_left_its_peak(_trainer_at(step, wsd)) for step in (0, 5, 10, 30, 60, 61, 80, 100, 120)}
    assert left == {0: False, 5: False, 10: False, 30: False, 60: False, 61: True, 80: True, 100: True, 120: True}
    cosine = cosine_warmup_scheduler(optimizer(), 1.0, 0.1, 10, 100)
    assert [lr_has_left_its_peak(_trainer_at(step, cosine)) for step in (5, 10, 11, 50)] == [False, False, True, True]
    constant = peak_relative_scheduler(optimizer(), lambda it: 1.0, 1.0)
    assert not lr_has_left_its_peak(_trainer_at(50, constant))
    assert lr_has_left_its_peak(_trainer_at(50, None))  # no schedule: nothing to wait for


def _decay_stop(decay_fraction: float) -> list[str]:
    """Flags for a 50-step debug fit (validations every 10 steps) under wsd whose decay is its last
    `decay_fraction`, with a DecayEarlyStopping under which no validation after the first counted improves."""
    stop = {**NEVER_IMPROVES, "class_path": "llm_lit.training.decay_early_stopping.DecayEarlyStopping"}
    return ["--trainer.max_steps", "50", "--model.optimizer.schedule", "wsd",
            "--model.optimizer.wsd.decay_fraction", str(decay_fraction), "--trainer.callbacks+", json.dumps(stop)]


@pytest.mark.parametrize("decay_fraction, stopped_at", [(0.2, 50), (0.9, 20)])
def test_plateau_validations_do_not_count_toward_the_decay_stop(tmp_path, decay_fraction: float,
                                                                stopped_at: int) -> None:
    """Decay from step 40: the stop sees only the validation at 40, and the run reaches its end, where plain
    EarlyStopping would stop at 20. Decay from step 5: validations at 10 and 20 count, and it stops at 20."""
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), *_decay_stop(decay_fraction),
                   "--trainer.enable_progress_bar", "false"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert f"fit finished at step {stopped_at}" in fit.stdout
    assert ("did not improve in the last 1 records" in fit.stdout + fit.stderr) == (stopped_at < 50)


def test_a_fit_stops_at_the_validation_that_exhausts_the_patience(tmp_path) -> None:
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.callbacks+", json.dumps(NEVER_IMPROVES),
                   "--trainer.enable_progress_bar", "false"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "fit finished at step 20" in fit.stdout  # validations at 10 and 20 of max_steps 30
    assert "did not improve in the last 1 records" in fit.stdout + fit.stderr
    last = torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 20
