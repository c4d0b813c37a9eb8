"""Scale and precision by config only: two-process DDP on CPU (gloo) equals one process with the
same global batch and one process with gradient accumulation, on a corpus of several files; bf16-mixed
runs on CPU."""

from __future__ import annotations

import math

import pytest

from cli_helpers import DEBUG_CONFIG, assert_quiet, run_cli, scalars
from llm_lit.data.tokens import BUNDLED_CORPUS

SHORT = ["--config", str(DEBUG_CONFIG), "--trainer.max_steps", "10", "--trainer.val_check_interval", "10",
         "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
         "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]"]


def _multi_file_corpus(tmp_path) -> str:
    """The bundled corpus as three files (windows span files, across the separator): the `--data.train_files` value."""
    data = BUNDLED_CORPUS.read_bytes()
    paths = []
    for i, (a, b) in enumerate([(0, 400_000), (400_000, 700_000), (700_000, len(data))]):
        paths.append(tmp_path / f"part{i}.txt")
        if not paths[-1].exists():
            paths[-1].write_bytes(data[a:b])
    return "[" + ",".join(map(str, paths)) + "]"


def _final_val_loss(tmp_path, name: str, extra: list[str]) -> float:
    root = tmp_path / name
    root.mkdir()
    result = run_cli(["fit", *SHORT, "--data.cache_dir", str(tmp_path / "cache"),
                      "--data.train_files", _multi_file_corpus(tmp_path), *extra], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result)  # under DDP: no sync_dist warnings for the metrics torchmetrics already reduced
    val = scalars(root / "runs", "val/loss")
    assert len(val) == 1
    return val[0][1]


@pytest.mark.parametrize("tied", [pytest.param(tied, marks=pytest.mark.slow) for tied in (False, True)],
                         ids=["untied", "tied"])
def test_ddp_matches_one_process_and_gradient_accumulation(tmp_path, tied: bool):
    # tied embeddings take the sparse lookup gradient, summed into the head's before DDP's all-reduce
    model = ["--model.config.tie_embeddings", str(tied).lower()]
    single = _final_val_loss(tmp_path, "single", [*model, "--data.batch_size", "16"])
    ddp = _final_val_loss(tmp_path, "ddp", [*model, "--data.batch_size", "8", "--trainer.devices", "2",
                                             "--trainer.strategy", "ddp"])
    # val_check_interval counts micro-batches: 20 of them make the same 10 optimizer steps
    accumulated = _final_val_loss(tmp_path, "accumulate", [*model, "--data.batch_size", "8", "--trainer.val_check_interval",
                                                           "20", "--trainer.accumulate_grad_batches", "2"])
    assert math.isclose(ddp, single, rel_tol=1e-4), (ddp, single)
    assert math.isclose(accumulated, single, rel_tol=1e-4), (accumulated, single)


def test_bf16_mixed_runs_on_cpu(tmp_path):
    root = tmp_path / "bf16"
    root.mkdir()
    result = run_cli(["fit", *SHORT, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--model.optimizer.warmup_steps", "1",
                      "--trainer.limit_val_batches", "1", "--trainer.precision", "bf16-mixed",
                      "--data.val_batch_size", "16"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    val = scalars(root / "runs", "val/loss")
    assert len(val) == 1 and math.isfinite(val[0][1]) and val[0][1] < math.log(300) + 1
