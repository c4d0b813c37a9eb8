"""A NaN injected into the loss at step k: the run stops with a message naming the step (or, with
skip_nonfinite, skips it and counts it), and no checkpoint ever holds non-finite weights. An update that
makes the weights huge but finite (lr 1e30) stops the run in one line too, with or without skip_nonfinite,
before any sample is drawn from them or any checkpoint of them is written."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, cli_env
from llm_lit.data import TextDataModule
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.training.guards import NonFiniteError
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.training.module import LanguageModel, OptimizerConfig
from llm_lit.run.checkpoint_io import AtomicCheckpointIO

NAN_AT = 5  # optimizer step (0-based global_step) whose loss becomes NaN


def _fit(tmp_path: Path, skip: bool, max_steps: int = 8, extra_callbacks: tuple = ()) -> tuple[L.Trainer, LanguageModel]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    data = TextDataModule(train_files=[str(tmp_path / "small.txt")], vocab_size=270, context_length=16, batch_size=8,
                          cache_dir=str(tmp_path / "cache"))
    config = ModelConfig(vocab_size=270, context_length=16, d_model=32, n_layers=1, n_heads=2)
    module = LanguageModel(config, optimizer=OptimizerConfig(lr=1e-2, warmup_steps=1), sample_prompts=[],
                           skip_nonfinite=skip)
    plain_loss = module.model.loss

    def loss_with_a_nan(x, y, **kwargs):
        loss = plain_loss(x, y, **kwargs)
        if module.trainer.training and module.global_step == NAN_AT and torch.is_grad_enabled():  # the step's batch
            loss = loss * float("nan")
        return loss

    module.model.loss = loss_with_a_nan
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, log_every_n_steps=1,
                        plugins=[AtomicCheckpointIO()],
                        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=0,
                                                   save_last=True), *extra_callbacks])
    trainer.fit(module, datamodule=data)
    return trainer, module


def _finite_checkpoint(path: Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in checkpoint["state_dict"].items():
        assert torch.isfinite(tensor).all(), name
    return checkpoint


def test_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError, match=rf"Training stopped at step {NAN_AT}: the loss is nan.*skip_nonfinite"):
        _fit(tmp_path, skip=False)
    checkpoint = _finite_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert checkpoint["global_step"] == NAN_AT  # saved after the last good step, never after the bad one


def test_skip_nonfinite_skips_the_step_and_counts_it(tmp_path):
    trainer, module = _fit(tmp_path, skip=True)
    assert trainer.global_step == 8 and module.skipped_steps == 1
    assert trainer.callback_metrics["train/skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    checkpoint = _finite_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert checkpoint["llm_lit"]["skipped_steps"] == 1


class Snapshots(L.Callback):
    """Copies of the weights and optimizer state after every optimizer step."""

    def __init__(self) -> None:
        self.states: list[tuple[dict, dict]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        optimizer = trainer.optimizers[0].state_dict()
        self.states.append(({k: v.clone() for k, v in pl_module.state_dict().items()},
                            {k: {f: torch.as_tensor(v).clone() for f, v in st.items()}
                             for k, st in optimizer["state"].items()}))


def test_a_skipped_step_leaves_weights_and_optimizer_state_untouched(tmp_path):
    snapshots = Snapshots()
    _fit(tmp_path, skip=True, extra_callbacks=[snapshots])
    (weights_before, optim_before), (weights_after, optim_after) = snapshots.states[NAN_AT - 1:NAN_AT + 1]
    for name, tensor in weights_before.items():
        assert torch.equal(tensor, weights_after[name]), name
    for key, state in optim_before.items():
        for field, value in state.items():
            assert torch.equal(value, optim_after[key][field]), (key, field)
    weights_next, _ = snapshots.states[NAN_AT + 1]
    assert not torch.equal(weights_next["model.ln_final.weight"], weights_after["model.ln_final.weight"])


@pytest.mark.parametrize("previous", [False, True], ids=["no-previous-checkpoint", "a-previous-last-ckpt"])
def test_non_finite_weights_are_never_saved(tmp_path, previous):
    # the message says the previous checkpoint is intact only when there is one (it used to say so always)
    config = ModelConfig(vocab_size=270, context_length=16, d_model=32, n_layers=1, n_heads=2)
    module = LanguageModel(config, sample_prompts=[])
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False,
                        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    if previous:
        (tmp_path / "last.ckpt").write_bytes(b"a checkpoint")
    module.trainer = trainer
    trainer.state.fn = "fit"
    with torch.no_grad():
        module.model.ln_final.weight[0] = math.inf
    fix = (rf"\(the previous one, {tmp_path / 'last.ckpt'}, is intact\)" if previous
           else r"\(none was written before either\); lower model.optimizer.lr and start again")
    with pytest.raises(NonFiniteError, match=rf"weights hold NaN or infinite values at step 0, so no checkpoint was "
                                             rf"written {fix}"):
        module.on_save_checkpoint({})


SCRIPT = """
import sys
from llm_lit.model import TransformerLM
from llm_lit.commands.cli import main
plain = TransformerLM.loss
def loss(self, x, y, **kw):
    out = plain(self, x, y, **kw)
    return out * float("nan") if self.training and loss.calls == 7 else out
def counting(self, x, y, **kw):
    if self.training:
        loss.calls += 1
    return loss(self, x, y, **kw)
loss.calls = -1
TransformerLM.loss = counting
sys.exit(main(sys.argv[1:]))
"""


def test_cli_nan_message_is_one_line_and_the_last_checkpoint_is_finite(tmp_path):
    args = ["--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "12",
            "--model.sample_prompts", "[]", "--trainer.val_check_interval", "12"]
    result = subprocess.run([sys.executable, "-c", SCRIPT, "fit", *args], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    err = result.stderr.strip().splitlines()
    assert err[-1].startswith("error: Training stopped at step 7: the loss is nan")
    assert "Traceback" not in result.stderr
    checkpoint = _finite_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    assert checkpoint["global_step"] == 5  # debug.yaml checkpoints every 5 steps


def _fit_with_an_exploding_update(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """debug.yaml with lr 1e30: the update of step 1 (the first past lr 0) makes the weights huge but finite."""
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--model.optimizer.lr",
            "1e30", "--model.skip_nonfinite", "true", *extra]
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=300)


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_skip_nonfinite_stops_when_an_update_made_the_weights_unusable(tmp_path):
    # every later step's loss is NaN (finite weights of ~1e29): skipping them all would train nothing
    err = _one_line(_fit_with_an_exploding_update(tmp_path))
    assert err.startswith("error: Training stopped at step 4: the loss was not finite on 3 steps in a row")
    assert "resume from one of step 1 or earlier" in err
    assert not list(tmp_path.rglob("*.ckpt"))  # checkpoints every 5 steps: none of these weights was saved


def test_a_non_finite_validation_loss_stops_before_sampling_and_saving(tmp_path):
    # validation right after the exploding update, before any step could notice it
    err = _one_line(_fit_with_an_exploding_update(tmp_path, "--trainer.val_check_interval", "2"))
    assert err.startswith("error: Training stopped at step 2: the validation loss is nan")
    assert not list(tmp_path.rglob("*.ckpt"))


def test_generation_from_unusable_weights_is_one_line():
    from llm_lit.generation.sampling import SamplingConfig, UnusableWeightsError, generate

    model = TransformerLM(ModelConfig(vocab_size=260, context_length=8, d_model=16, n_layers=1, n_heads=2))
    with torch.no_grad():
        model.ln_final.weight.fill_(math.nan)
    for temperature in (0.0, 0.8):  # greedy would return garbage ids, sampling would fail inside torch
        with pytest.raises(UnusableWeightsError, match="scores are NaN or infinite"):
            generate(model, [[1, 2, 3]], SamplingConfig(max_new_tokens=4, temperature=temperature))
