"""Every shipped config takes a smoke test as a new user types it: `fit --trainer.max_steps 2` (shorter than its
warmup) runs, then `validate` and `predict` find its checkpoint with `--ckpt_path last`, and nothing is written
outside `runs/` (the token cache is passed elsewhere). gpt2-small is left out: its 50,257-token vocabulary is more
than the bundled corpus yields, which is refused before the data step (tests/faults/test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli_helpers import REPO, run_cli

SLOW = pytest.mark.slow
CONFIGS = [
    "debug.yaml",
    pytest.param("ladder/bigram.yaml", marks=SLOW),
    pytest.param("shakespeare.yaml", marks=SLOW),
    pytest.param("ladder/char-transformer.yaml", marks=SLOW),
    pytest.param("ladder/bpe-transformer.yaml", marks=SLOW),
    pytest.param("llama-small.yaml", marks=SLOW),
    pytest.param("enwiki.yaml", marks=SLOW),
]
#: Settings a user without a GPU adds to a GPU config (llama-small asks for a GPU and bf16).
ON_THIS_MACHINE = {"llama-small.yaml": [] if torch.cuda.is_available() else
                   ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true"]}


def corpus_of(config: str, folder: Path) -> list[str]:
    """The files a config that names no bundled corpus is given (enwiki: two slices of the bundled one, in `folder`)."""
    if config != "enwiki.yaml":
        return []
    text = (REPO / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt").read_bytes()
    (folder / "train.txt").write_bytes(text[:600_000])
    (folder / "valid.txt").write_bytes(text[600_000:700_000])
    return ["--data.train_files", f"[{folder / 'train.txt'}]", "--data.val_files", f"[{folder / 'valid.txt'}]"]


@pytest.mark.parametrize("config", CONFIGS)
def test_a_shipped_config_fits_two_steps_then_validates_and_predicts_from_last(config, tmp_path):
    scratch, cache = tmp_path / "scratch", tmp_path / "cache"
    scratch.mkdir()
    common = ["--config", str(REPO / "configs" / config), *ON_THIS_MACHINE.get(config, []), "--data.cache_dir", str(cache),
              "--torch_threads", "1", *corpus_of(config, tmp_path)]
    fit = run_cli(["fit", *common, "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"], scratch,
                  timeout=600)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "fit finished at step 2" in fit.stdout
    assert "is longer than this 2-step run has room for: warming up over" in fit.stdout + fit.stderr  # every warmup > 2
    name = Path(config).stem
    last = scratch / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    validate = run_cli(["validate", *common, "--ckpt_path", "last", "--trainer.enable_progress_bar", "false"], scratch)
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert "val/loss" in validate.stdout and "---- samples at step 2 " in validate.stdout  # the checkpoint's step
    predict = run_cli(["predict", *common, "--ckpt_path", "last", "--data.prompts", '["The "]',
                       "--model.sampling.max_new_tokens", "4", "--trainer.enable_progress_bar", "false"], scratch)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert (last.parent.parent / "predictions.jsonl").is_file()
    assert sorted(p.name for p in scratch.iterdir()) == ["runs"]
    assert sorted(p.name for p in (scratch / "runs").iterdir()) == [name]
