"""The model options of `ModelConfig` end to end through `llm_lit`: fit with all of them on, resume,
and predict from the checkpoint alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from llm_lit.run.checkpoint import load_checkpoint

OPTIONS = ["--model.config.qk_norm", "true", "--model.config.ffn", "relu2", "--model.config.zero_init_residual", "true",
           "--model.config.tie_embeddings", "true", "--model.config.embedding_scale", "2.0",
           "--model.config.logit_scale", "0.5", "--model.config.logit_softcap", "30"]


@pytest.mark.slow
def test_fit_resume_and_predict_with_every_option_on(tmp_path: Path) -> None:
    common = ["--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false"]
    result = run_cli(["fit", *common, *OPTIONS, "--trainer.max_steps", "10"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    model, _ = load_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    c = model.config
    assert (c.qk_norm, c.ffn, c.zero_init_residual, c.embedding_scale, c.logit_scale, c.logit_softcap) == \
        (True, "relu2", True, 2.0, 0.5, 30.0)
    assert model.layers[0].attn.q_norm.weight.shape == (16,)
    result = run_cli(["fit", *common, *OPTIONS, "--trainer.max_steps", "12", "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(["predict", "--ckpt_path", str(DEBUG_CKPTS / "last.ckpt"), "--data.prompts", '["ROMEO:"]',
                      "--data.predictions_path", "preds.jsonl", "--model.sampling.max_new_tokens", "5",
                      "--trainer.enable_progress_bar", "false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((tmp_path / "preds.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == "ROMEO:" and 0 < row["num_tokens"] <= 5

