"""A run stops early, and says why, when Lightning's EarlyStopping sees val loss stop improving (the default
config uses it), and what it leaves is a normal finished run: a last checkpoint at the step it stopped."""

from __future__ import annotations

import json

import torch
import yaml

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, REPO, run_cli

#: min_delta 100: no validation after the first counts as an improvement, so patience 1 stops at the second.
NEVER_IMPROVES = {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
                  "init_args": {"monitor": "val/loss", "patience": 1, "min_delta": 100.0, "verbose": True}}


def test_the_default_config_stops_after_two_validations_without_improvement() -> None:
    config = yaml.safe_load((REPO / "configs" / "shakespeare.yaml").read_text())
    stops = [c for c in config["trainer"]["callbacks+"] if c["class_path"].endswith(".EarlyStopping")]
    assert [c["init_args"] for c in stops] == [{"monitor": "val/loss", "patience": 2, "verbose": True}]


def test_a_fit_stops_at_the_validation_that_exhausts_the_patience(tmp_path) -> None:
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.callbacks+", json.dumps(NEVER_IMPROVES),
                   "--trainer.enable_progress_bar", "false"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "fit finished at step 20" in fit.stdout  # validations at 10 and 20 of max_steps 30
    assert "did not improve in the last 1 records" in fit.stdout + fit.stderr
    last = torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 20
