"""`validate` and `test` from a checkpoint find the token cache fit built (its tokenizer is the checkpoint's, found by
fingerprint): no corpus is encoded again and no new cache folder appears."""

from __future__ import annotations

from cli_helpers import DEBUG_CONFIG, run_cli


def test_validate_from_last_reuses_fits_cache(tmp_path):
    common = ["--config", str(DEBUG_CONFIG), "--data.cache_dir", "cache", "--torch_threads", "1",
              "--trainer.enable_progress_bar", "false"]
    fit = run_cli(["fit", *common, "--trainer.max_steps", "2", "--model.sample_prompts", "[]"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 1
    validate = run_cli(["validate", *common, "--ckpt_path", "last"], tmp_path)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == folders
    assert "ncod" not in validate.stderr  # nothing encoded
