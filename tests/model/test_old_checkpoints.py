"""Checkpoints written before `ModelConfig.kernels` existed (their configs say `attention`) still
load, with the same state-dict names, and compute what the code that wrote them computed.

`data/checkpoints_of_main.pt` was written by main at 114e25a (`data/make_checkpoints_of_main.py`).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import pytest
import torch

from llm_lit.run.checkpoint import load_checkpoint
from llm_lit.model.checks import config_differences
from llm_lit.model import ModelConfig, TransformerLM

from cli_helpers import run_cli  # noqa: E402

DATA = Path(__file__).parent / "data" / "checkpoints_of_main.pt"
KERNELS = {"gpt2-tied-fused": "torch", "llama-gqa-reference": "reference", "alibi-untied-fused": "torch"}


@pytest.fixture(scope="module")
def data() -> dict:
    return torch.load(DATA, weights_only=True)


def write_checkpoint(data: dict, name: str, path: Path) -> Path:
    """The Lightning checkpoint of `name` as `llm_lit fit` on main wrote it (weights, config, tokenizer)."""
    entry = data["checkpoints"][name]
    torch.save({"state_dict": entry["state_dict"], "pytorch-lightning_version": lightning.__version__,
                "llm_lit": {"version": 1, "model_config": entry["model_config"], "tokenizer": data["tokenizer"],
                            "skipped_steps": 0}}, path)
    return path


@pytest.mark.parametrize("name", list(KERNELS))
def test_old_checkpoint_loads_and_gives_the_same_logits(data: dict, name: str, tmp_path: Path) -> None:
    entry = data["checkpoints"][name]
    assert "attention" in entry["model_config"] and "kernels" not in entry["model_config"]
    path = write_checkpoint(data, name, tmp_path / "old.ckpt")
    with pytest.warns(FutureWarning, match=r"attention='(fused|reference)' is deprecated"):
        model, tokenizer = load_checkpoint(path)  # strict: every old name is a name of today's model
    assert model.config.kernels == KERNELS[name]
    assert tokenizer.vocab_size == 260
    with torch.no_grad():
        torch.testing.assert_close(model(data["ids"])[:, -3:], entry["last_logits"], atol=1e-5, rtol=1e-5)  # any threads
        other = "reference" if model.config.kernels == "torch" else "torch"
        rebuilt = TransformerLM(ModelConfig.from_dict({**model.config.to_dict(), "kernels": other}))
        rebuilt.load_state_dict(model.state_dict(), strict=True)
        torch.testing.assert_close(rebuilt(data["ids"])[:, -3:], entry["last_logits"], atol=1e-5, rtol=1e-5)
    # resuming compares the saved config with the model's: the rename is not an architecture change
    assert config_differences(entry["model_config"], model.config.to_dict()) == []


@pytest.mark.slow
def test_old_checkpoint_predicts_and_exports_through_the_cli(data: dict, tmp_path: Path) -> None:
    path = write_checkpoint(data, "gpt2-tied-fused", tmp_path / "old.ckpt")
    result = run_cli(["predict", "--ckpt_path", str(path), "--data.prompts", '["ab"]', "--data.predictions_path",
                      "preds.jsonl", "--model.sampling.max_new_tokens", "4", "--model.sampling.temperature", "0",
                      "--trainer.enable_progress_bar", "false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("is deprecated and read as kernels='torch'") >= 1
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"] == "ab" and 0 < rows[0]["num_tokens"] <= 4
    result = run_cli(["export", "--ckpt_path", str(path), "--output", "hf"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "hf" / "model.safetensors").is_file()
