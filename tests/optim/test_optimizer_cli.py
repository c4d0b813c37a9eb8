"""`llm_lit fit` with each optimizer and schedule on configs/debug.yaml (subprocesses), and every bad
`model.optimizer` value with its one-line message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from llm_lit.optim import inverse_time_lr_at, wsd_lr_at

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, one_line_error, run_cli, scalars

# One thread: bfloat16 matmuls of Muon's tiny matrices run several times slower on two threads of a busy CPU.
SHORT = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "16",
         "--trainer.val_check_interval", "8", "--trainer.log_every_n_steps", "1", "--model.optimizer.warmup_steps", "2",
         "--torch_threads", "1"]


def _fit(root: Path, cache: Path, *extra: str) -> dict:
    """Run a short fit in `root`; return its last checkpoint."""
    result = run_cli([*SHORT, "--data.cache_dir", str(cache), *extra], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(root / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_learns_and_logs(root: Path, lr_at) -> None:
    logs = root / DEBUG_RUN
    train, val = scalars(logs, "train/loss"), scalars(logs, "val/loss")
    assert len(val) == 2 and train[-1][1] < train[0][1] - 0.3
    lrs = scalars(logs, "lr")
    assert len(lrs) == 16
    for step, lr in lrs:  # logged after optimizer step `step` (counted from 0) and its scheduler step
        assert lr == pytest.approx(lr_at(step + 1), rel=1e-6), step


def test_fit_with_sgd_nesterov_and_inverse_time_decay(tmp_path, cache):
    checkpoint = _fit(tmp_path, cache, "--model.optimizer.name", "sgd", "--model.optimizer.lr", "0.5",
                      "--model.optimizer.min_lr", "0.01", "--model.optimizer.sgd.momentum", "0.8",
                      "--model.optimizer.sgd.nesterov", "true", "--model.optimizer.schedule", "inverse_time",
                      "--model.optimizer.inverse_time.decay", "0.2")
    _assert_learns_and_logs(tmp_path, lambda it: inverse_time_lr_at(it, 0.5, 0.01, 2, 0.2))
    state = checkpoint["optimizer_states"][0]
    assert {g["momentum"] for g in state["param_groups"]} == {0.8}
    assert all(set(s) == {"momentum_buffer"} for s in state["state"].values())
    saved = yaml.safe_load((tmp_path / DEBUG_RUN / "config.yaml").read_text())["model"]["optimizer"]
    assert saved["name"] == "sgd" and saved["schedule"] == "inverse_time" and saved["sgd"]["nesterov"] is True


def test_fit_with_muon_and_warmup_stable_decay(tmp_path, cache):
    checkpoint = _fit(tmp_path, cache, "--model.optimizer.name", "muon", "--model.optimizer.muon.lr", "0.03",
                      "--model.optimizer.schedule", "wsd", "--model.optimizer.wsd.decay_fraction", "0.5",
                      "--model.optimizer.wsd.decay_shape", "1-sqrt")
    _assert_learns_and_logs(tmp_path, lambda it: wsd_lr_at(it, 0.01, 0.001, 2, 8, 16, "1-sqrt"))  # debug.yaml's lr
    state = checkpoint["optimizer_states"][0]
    *adamw_groups, muon_group = state["param_groups"]
    assert muon_group["muon"] and not any(g["muon"] for g in adamw_groups)
    assert muon_group["lr"] == pytest.approx(0.03 * 0.001 / 0.01)  # muon.lr scaled like lr: at min_lr at the end
    assert len(muon_group["params"]) == 2 * 7  # debug.yaml: 2 Llama blocks of q, k, v, o, w1, w2, w3
    for index in muon_group["params"]:
        assert set(state["state"][index]) == {"momentum_buffer"}
    for index in (i for g in adamw_groups for i in g["params"]):
        assert set(state["state"][index]) == {"step", "exp_avg", "exp_avg_sq"}


def test_a_bad_value_ends_the_subprocess_with_one_line_and_exit_code_2(tmp_path, cache):
    result = run_cli([*SHORT, "--data.cache_dir", str(cache), "--model.optimizer.muon.lr", "0.05"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Invalid model.optimizer settings: muon.lr is set (0.05) but applies only with name muon, not adamw; "
        "fix these settings and try again.")


# ---------------------------------------------------------------------- bad values, in-process
def _error(capsys, *extra: str) -> str:
    """The one `error: ...` line of a fit of the small corpus that must fail with exit code 2."""
    argv = ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", '["small.txt"]', "--data.vocab_size", "270",
            "--trainer.max_steps", "10", "--model.optimizer.warmup_steps", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false", *extra]
    return one_line_error(argv, capsys)


@pytest.mark.parametrize("extra, message", [
    (["--model.optimizer.name", "rmsprop"], "Invalid value for model.optimizer.name: Expected a typing.Literal"),
    (["--model.optimizer.schedule", "step"], "Invalid value for model.optimizer.schedule"),
    (["--model.optimizer.wsd.decay_shape", "cosine"], "Invalid value for model.optimizer.wsd.decay_shape"),
    (["--model.optimizer.muon.ns_dtype", "float16"], "Invalid value for model.optimizer.muon.ns_dtype"),
    (["--model.optimizer.sgd.momentom", "0.5"],
     "Unknown config key 'model.optimizer.sgd.momentom'; did you mean 'model.optimizer.sgd.momentum'?"),
    (["--model.optimizer.sgd.momentum", "0.5"], "sgd.momentum is set (0.5) but applies only with name sgd, not adamw"),
    (["--model.optimizer.name", "muon", "--model.optimizer.sgd.nesterov", "true"],
     "sgd.nesterov is set (True) but applies only with name sgd, not muon"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.muon.ns_steps", "3"],
     "muon.ns_steps is set (3) but applies only with name muon, not sgd"),
    (["--model.optimizer.wsd.decay_fraction", "0.3"],
     "wsd.decay_fraction is set (0.3) but applies only with schedule wsd, not cosine"),
    (["--model.optimizer.schedule", "wsd", "--model.optimizer.inverse_time.decay", "0.5"],
     "inverse_time.decay is set (0.5) but applies only with schedule inverse_time, not wsd"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.betas", "[0.8, 0.9]"],
     "betas is set ([0.8, 0.9]) but applies only to AdamW (name adamw or muon), not sgd"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.eps", "1e-6"], "eps is set (1e-06) but applies only to AdamW"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.compile", "true"],
     "compile is set (True) but applies only to AdamW"),
    (["--model.optimizer.lr", "-0.1"], "lr must be >= 0 (got -0.1)"),
    (["--model.optimizer.min_lr", "0.1"], "min_lr must be in [0, lr] (got 0.1 with lr 0.01)"),
    (["--model.optimizer.warmup_steps", "-3"], "warmup_steps must be >= 0 (got -3)"),
    (["--model.optimizer.weight_decay", "-1"], "weight_decay must be >= 0 (got -1.0)"),
    (["--model.optimizer.betas", "[0.9, 1.5]"], "betas must be two numbers in [0, 1) (got [0.9, 1.5])"),
    (["--model.optimizer.eps", "-1"], "eps must be >= 0 (got -1.0)"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.sgd.momentum", "1"], "sgd.momentum must be in [0, 1) (got 1.0)"),
    (["--model.optimizer.name", "sgd", "--model.optimizer.sgd.momentum", "0", "--model.optimizer.sgd.nesterov", "true"],
     "sgd.nesterov needs sgd.momentum > 0"),
    (["--model.optimizer.name", "muon", "--model.optimizer.muon.lr", "-1"], "muon.lr must be >= 0 (got -1.0)"),
    (["--model.optimizer.name", "muon", "--model.optimizer.muon.momentum", "1.5"],
     "muon.momentum must be in [0, 1) (got 1.5)"),
    (["--model.optimizer.name", "muon", "--model.optimizer.muon.ns_steps", "0"], "muon.ns_steps must be >= 1 (got 0)"),
    (["--model.optimizer.schedule", "wsd", "--model.optimizer.wsd.decay_fraction", "2"],
     "wsd.decay_fraction must be in [0, 1] (got 2.0)"),
    (["--model.optimizer.schedule", "inverse_time", "--model.optimizer.inverse_time.decay", "-1"],
     "inverse_time.decay must be >= 0 (got -1.0)"),
])
def test_bad_optimizer_settings_are_refused_before_training(workdir, capsys, extra: list[str], message: str):
    assert message in _error(capsys, *extra)
    assert not (workdir / "runs").exists()
