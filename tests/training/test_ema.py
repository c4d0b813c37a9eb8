"""The weight average (`llm_lit.training.ema`): against its formula on random weights, exact swaps and state, the
settings' refusals, and through `llm_lit fit` (validation on the average, checkpoints holding it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, run_cli, scalars
from llm_lit.training.ema import EMA_KEY, EmaSettings, WeightAverage, refuse_resume_without_ema
from llm_lit.errors import UserError


def formula(history: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    """sum_k (1 - d) d^(t-k) w_k / (1 - d^t), in float64, for the weights after steps 1..t."""
    t = len(history)
    total = [torch.zeros_like(w, dtype=torch.float64) for w in history[0]]
    for k, weights in enumerate(history, start=1):
        for acc, w in zip(total, weights):
            acc += (1 - decay) * decay ** (t - k) * w.double()
    return [acc / (1 - decay ** t) for acc in total]


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.99])
def test_the_average_matches_its_formula(decay: float) -> None:
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(7, 5, generator=generator), torch.randn(3, generator=generator)]
    average = WeightAverage(params, decay)
    assert all(torch.equal(a, p) for a, p in zip(average.averages(), params))  # before any step: the weights
    history = []
    for _ in range(40):
        for p in params:
            p.add_(torch.randn(p.shape, generator=generator))  # an "optimizer step"
        history.append([p.clone() for p in params])
        average.update()
        for got, want in zip(average.averages(), formula(history, decay)):
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def power_formula(history: list[list[torch.Tensor]], gamma: float) -> list[torch.Tensor]:
    """The power-function average in closed form: step k of t counts (k^(g+1) - (k-1)^(g+1)) / t^(g+1), float64."""
    t = len(history)
    total = [torch.zeros_like(w, dtype=torch.float64) for w in history[0]]
    for k, weights in enumerate(history, start=1):
        for acc, w in zip(total, weights):
            acc += (k ** (gamma + 1) - (k - 1) ** (gamma + 1)) / t ** (gamma + 1) * w.double()
    return total


@pytest.mark.parametrize("gamma", [0.0, 1.0, 5.0, 16.97])
def test_the_power_average_matches_its_closed_form(gamma: float) -> None:
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(4, 6, generator=generator), torch.randn(5, generator=generator)]
    average = WeightAverage(params, 0.99, gamma=gamma)
    history = []
    for _ in range(60):
        for p in params:
            p.add_(torch.randn(p.shape, generator=generator))
        history.append([p.clone() for p in params])
        average.update()
        for got, want in zip(average.averages(), power_formula(history, gamma)):
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    if gamma == 0.0:  # gamma 0: the plain mean of every step's weights
        mean = torch.stack([h[0] for h in history]).double().mean(0)
        torch.testing.assert_close(average.averages()[0].double(), mean, rtol=1e-5, atol=1e-5)


def test_the_power_average_remembers_a_fixed_share_of_the_run() -> None:
    average = WeightAverage([torch.zeros(1)], 0.99, gamma=5.0)
    for t in (600, 1200, 2400):  # d_t is about 1 - (gamma + 1) / t: a memory of t / 6 steps
        assert 1.0 / (1.0 - average.decay_at(t)) == pytest.approx(t / 6, rel=0.01)


def test_the_average_of_constant_weights_is_the_weights() -> None:
    params = [torch.full((4,), 3.0)]
    average = WeightAverage(params, 0.9)
    for _ in range(5):
        average.update()
    torch.testing.assert_close(average.averages()[0], params[0])  # debiased: no pull towards 0


def test_swapping_in_is_exact_both_ways() -> None:
    generator = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(6, 6, generator=generator)) for _ in range(3)]
    average = WeightAverage(params, 0.9)
    for _ in range(3):
        with torch.no_grad():
            for p in params:
                p.mul_(1.1).add_(0.01)
        average.update()
    training = [p.detach().clone() for p in params]
    with average.swapped_in():
        assert all(torch.equal(p, a) for p, a in zip(params, average.averages()))
        assert not torch.equal(params[0], training[0])
    assert all(torch.equal(p, w) for p, w in zip(params, training))


def test_state_round_trip_is_bitwise() -> None:
    generator = torch.Generator().manual_seed(2)
    params = [torch.randn(5, 3, generator=generator)]
    average = WeightAverage(params, 0.95)
    for _ in range(7):
        params[0].add_(torch.randn(5, 3, generator=generator))
        average.update()
    state = average.state_dict()
    restored = WeightAverage([params[0].clone()], 0.95)
    restored.load_state_dict(state)
    assert restored.steps == 7 and torch.equal(restored.sums[0], average.sums[0])
    assert state["gamma"] is None
    params[0].add_(1.0)
    average.update()
    restored.params[0].add_(1.0)
    restored.update()
    assert torch.equal(restored.averages()[0], average.averages()[0])
    with pytest.raises(UserError, match="does not fit this model"):
        WeightAverage([torch.zeros(2, 2)], 0.95).load_state_dict(state)
    with pytest.raises(UserError, match="kept with a fixed decay; resume with the model.ema settings"):
        WeightAverage([params[0].clone()], 0.95, gamma=5.0).load_state_dict(state)
    power = WeightAverage([params[0].clone()], 0.99, gamma=5.0)
    with pytest.raises(UserError, match="kept with gamma 5.0; resume with the model.ema settings"):
        WeightAverage([params[0].clone()], 0.99).load_state_dict(power.state_dict())


def test_bad_settings_are_refused_in_one_sentence() -> None:
    for decay in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(UserError, match=r"model.ema.decay must be in \(0, 1\)"):
            EmaSettings(enabled=True, decay=decay)
    with pytest.raises(UserError, match="model.ema.enabled is false"):
        EmaSettings(decay=0.9)
    assert not EmaSettings().enabled
    with pytest.raises(UserError, match="resume with --model.ema.enabled true --model.ema.decay 0.9"):
        refuse_resume_without_ema({EMA_KEY: {"decay": 0.9}}, ema_enabled=False)
    refuse_resume_without_ema({EMA_KEY: {"decay": 0.9}}, ema_enabled=True)
    with pytest.raises(UserError, match="resume with --model.ema.enabled true --model.ema.gamma 5.0"):
        refuse_resume_without_ema({EMA_KEY: {"decay": 0.99, "gamma": 5.0}}, ema_enabled=False)
    with pytest.raises(UserError, match=r"model.ema.gamma must be >= 0 \(got -1.0\)"):
        EmaSettings(enabled=True, gamma=-1.0)
    with pytest.raises(UserError, match=r"model.ema.gamma is set \(5.0\) but model.ema.enabled is false"):
        EmaSettings(gamma=5.0)
    with pytest.raises(UserError, match="are both set; set one"):
        EmaSettings(enabled=True, decay=0.998, gamma=5.0)
    assert EmaSettings(enabled=True, gamma=5.0).gamma == 5.0
    refuse_resume_without_ema({}, ema_enabled=False)


# ---------------------------------------------------------------------- through llm_lit fit
BASE_ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
             "--trainer.log_every_n_steps", "1", "--model.config.dropout", "0.1", "--torch_threads", "1"]
EMA_ARGS = [*BASE_ARGS, "--model.ema.enabled", "true", "--model.ema.decay", "0.8"]


@pytest.mark.slow
def test_fit_validates_the_average_and_checkpoints_hold_it(tmp_path: Path) -> None:
    args = [*EMA_ARGS, "--data.cache_dir", str(tmp_path / "cache")]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    last = tmp_path / DEBUG_CKPTS / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    saved = checkpoint[EMA_KEY]
    assert saved["steps"] == 20 and saved["decay"] == 0.8
    weights = [v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")]
    assert len(saved["training_weights"]) == len(weights)  # untied debug model: one tensor per parameter
    assert any(not torch.equal(a, w) for a, w in zip(weights, saved["training_weights"]))  # the average is saved
    scale = 1 / (1 - 0.8 ** 20)
    for average, running_sum in zip(weights, saved["sums"]):
        torch.testing.assert_close(average, running_sum * scale)
    # validate from the checkpoint alone measures what fit's last validation measured: the average
    validated = run_cli(["validate", "--ckpt_path", str(last), "--data.cache_dir", str(tmp_path / "cache"),
                         "--trainer.enable_progress_bar", "false", "--data.val_batch_size", "512"], cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-3000:]
    fit_loss = scalars(tmp_path / DEBUG_RUN, "val/loss")[-1][1]
    assert f"{fit_loss:.5f}"[:6] in validated.stdout
    # resuming without the EMA would train on from the average: refused in one line
    refused = run_cli([*BASE_ARGS, "--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_steps", "25",
                       "--ckpt_path", "last"], cwd=tmp_path)
    assert refused.returncode == 2 and "resume with --model.ema.enabled true --model.ema.decay 0.8" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in refused.stderr

