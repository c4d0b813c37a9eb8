"""The `llm_lit` command line: fit -> checkpoint -> validate -> predict end to end on debug.yaml,
config parsing, and one-line errors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, REPO, one_line_error, run_cli, scalars
from llm_lit.run.checkpoint import load_checkpoint, read_checkpoint
from llm_lit.commands.cli import main
from tokenizer import Tokenizer


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Path:
    """One `llm_lit fit --config configs/debug.yaml` in a fresh folder, shared by the tests below."""
    root = tmp_path_factory.mktemp("debug_run")
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_fit_logs_falling_losses_and_all_metrics(debug_run):
    logs = debug_run / DEBUG_RUN
    train = scalars(logs, "train/loss")
    val = scalars(logs, "val/loss")
    assert len(val) == 3  # validation every 10 of 30 steps
    assert train[-1][1] < train[0][1] - 0.3
    assert val[-1][1] < val[0][1]
    ppl, bpb = scalars(logs, "val/ppl"), scalars(logs, "val/bpb")
    assert math.isclose(ppl[-1][1], math.exp(val[-1][1]), rel_tol=1e-4)
    assert 0 < bpb[-1][1] < val[-1][1] / math.log(2)  # every token holds at least one byte
    for tag in ("lr", "grad_norm", "perf/tokens_per_s"):
        assert scalars(logs, tag), tag
    elapsed = scalars(logs, "time/elapsed_s")  # the wall time of each validation, from the command's start
    assert [step for step, _ in elapsed] == [step for step, _ in val]
    assert 0 < elapsed[0][1] < elapsed[1][1] < elapsed[2][1] < 600
    assert not scalars(logs, "perf/mfu")  # unknown peak on CPU: omitted, not guessed


def test_checkpoints_are_self_contained_and_carry_the_data_position(debug_run):
    ckpts = debug_run / DEBUG_CKPTS
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "best-step30.ckpt").is_file()
    model, tokenizer = load_checkpoint(ckpts / "last.ckpt")
    assert isinstance(tokenizer, Tokenizer) and tokenizer.vocab_size == 300
    assert model.config.vocab_size == 300 and model.config.context_length == 32
    ids = torch.tensor([tokenizer.encode("ROMEO:")])
    assert model(ids).shape == (1, ids.shape[1], 300)
    raw = read_checkpoint(ckpts / "last.ckpt")
    assert raw["global_step"] == 30
    assert raw["TextDataModule"] == {"train_batches_consumed": 30}


@pytest.mark.slow
def test_fit_with_the_compiled_optimizer_update_follows_the_eager_run(debug_run, tmp_path):
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false",
                      "--model.optimizer.compile", "true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    eager = read_checkpoint(debug_run / DEBUG_CKPTS / "last.ckpt")
    compiled = read_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    saved = yaml.safe_load((tmp_path / DEBUG_RUN / "config.yaml").read_text())
    assert saved["model"]["optimizer"]["compile"] is True
    assert compiled["global_step"] == eager["global_step"] == 30
    for name, weight in eager["state_dict"].items():
        torch.testing.assert_close(compiled["state_dict"][name], weight, atol=1e-4, rtol=1e-4, msg=name)


def test_validate_reproduces_the_checkpoint_val_loss_exactly(debug_run):
    best = debug_run / DEBUG_CKPTS / "best-step30.ckpt"
    saved = read_checkpoint(best)
    callback_states = [s for k, s in saved["callbacks"].items() if "val/loss" in k]
    best_score = float(callback_states[0]["best_model_score"])
    # no --config: the checkpoint supplies the model and the tokenizer; the corpus is the bundled default
    result = run_cli(["validate", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false",
                      "--data.val_batch_size", "512"], cwd=debug_run)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"val/loss\s*│\s*([0-9.]+)", result.stdout) or re.search(r"val/loss\W+([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:]
    assert abs(float(match.group(1)) - best_score) < 1e-4


def test_predict_needs_only_the_checkpoint(debug_run):
    ckpt = debug_run / DEBUG_CKPTS / "last.ckpt"
    prompts_file = debug_run / "prompts.txt"
    prompts_file.write_text("KING RICHARD:\n")
    result = run_cli(["predict", "--ckpt_path", str(ckpt), "--data.prompts", '["ROMEO:", "JULIET:"]',
                      "--data.prompts_file", str(prompts_file), "--data.predictions_path", "out/preds.jsonl",
                      "--model.sampling.max_new_tokens", "12", "--model.sampling.temperature", "0",
                      "--trainer.enable_progress_bar", "false"], cwd=debug_run)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (debug_run / "out" / "preds.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["ROMEO:", "JULIET:", "KING RICHARD:"]
    for row in rows:
        assert isinstance(row["completion"], str) and 0 < row["num_tokens"] <= 12
        assert row["prompt"] + row["completion"] in result.stdout
    # greedy decoding equals generating from the checkpoint by hand
    model, tokenizer = load_checkpoint(ckpt)
    from llm_lit.generation.sampling import SamplingConfig, generate
    eot = tokenizer.token_to_id("<|endoftext|>")
    new = generate(model, [tokenizer.encode("ROMEO:")], SamplingConfig(max_new_tokens=12, temperature=0), [eot])
    assert tokenizer.decode(new[0]) == rows[0]["completion"]


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "model:" in printed and "data:" in printed and "trainer:" in printed


def test_unknown_key_names_the_nearest_valid_key(capsys):
    err = one_line_error(["fit", "--config", str(DEBUG_CONFIG), "--model.config.d_modle", "64"], capsys, alone=True)
    assert "model.config.d_model" in err


def test_unknown_key_in_a_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  config:\n    n_layer: 2\n")
    err = one_line_error(["fit", "--config", str(bad)], capsys, alone=True)
    assert "n_layers" in err


def test_bad_value_is_one_line(capsys):
    err = one_line_error(["fit", "--model.config.norm", "batchnorm"], capsys, alone=True)
    assert "model.config.norm" in err


def test_invalid_model_combination_is_one_line(capsys):
    err = one_line_error(["fit", "--model.config.d_model", "30", "--model.config.n_heads", "4"], capsys, alone=True)
    assert "divisible" in err


def test_predict_with_a_missing_checkpoint(tmp_path, capsys):
    err = one_line_error(["predict", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--data.prompts", '["a"]'], capsys, alone=True)
    assert "does not exist" in err


def test_predict_with_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    err = one_line_error(["predict", "--ckpt_path", str(bad), "--data.prompts", '["a"]'], capsys, alone=True)
    assert "truncated or corrupt" in err


def test_predict_with_a_foreign_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    err = one_line_error(["predict", "--ckpt_path", str(foreign), "--data.prompts", '["a"]'], capsys, alone=True)
    assert "not written by llm_lit" in err


def test_fit_without_max_steps_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "-1",
                           "--trainer.enable_progress_bar", "false"], capsys, alone=True)
    assert "max_steps" in err


def test_resume_from_last_continues_the_step_count_and_data_position(debug_run, tmp_path):
    import shutil

    shutil.copytree(debug_run / DEBUG_CKPTS, tmp_path / DEBUG_CKPTS)
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--ckpt_path", "last", "--trainer.max_steps", "35",
                      "--data.cache_dir", str(debug_run / ".llm_lit_cache"), "--trainer.enable_progress_bar", "false"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    raw = read_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    assert raw["global_step"] == 35
    assert raw["TextDataModule"] == {"train_batches_consumed": 35}
    steps = [s for s, _ in scalars(tmp_path / DEBUG_RUN, "train/loss")]
    assert steps and min(steps) >= 30  # the resumed run logs from where the first one stopped
