"""A weighted mixture end to end: `llm_lit fit` with `data.sources` logs val/<name>/loss and val/<name>/bpb for
each source next to the overall figures (which pool every source's tokens), and two DDP ranks draw exactly the
windows of one process with twice the batch and measure the same validation figures."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CONFIG, cli_env, scalars
from format_helpers import write_mixture
from llm_lit.data.tokens import BUNDLED_CORPUS

RECORDER = Path(__file__).resolve().parents[1] / "commands"  # window_recorder.py
TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
NAMES = ("web", "code", "books")


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Path:
    """A 3-source mixture config (0.6 / 0.3 / 0.1): Parquet, JSONL.zst and text files."""
    return write_mixture(tmp_path_factory.mktemp("mixture"), TEXT)


def _fit(root: Path, mixture: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = cli_env()
    env["PYTHONPATH"] = str(RECORDER) + os.pathsep + env["PYTHONPATH"]
    args = ["fit", "--config", str(DEBUG_CONFIG), "--config", str(mixture), "--data.cache_dir", str(cache),
            "--trainer.max_steps", "4", "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "3",
            "--model.optimizer.warmup_steps", "1", "--model.sample_prompts", "[]",
            "--trainer.callbacks=[]", "--trainer.enable_checkpointing", "false",
            "--trainer.callbacks+=window_recorder.WindowRecorder", "--trainer.callbacks.dirpath",
            str(root / "windows"), "--torch_threads", "1", *extra]
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=900)


def _val(root: Path) -> dict[str, float]:
    tags = ["val/loss", "val/bpb"] + [f"val/{n}/{m}" for n in NAMES for m in ("loss", "bpb")]
    values = {}
    for tag in tags:
        found = scalars(root / "runs", tag)
        assert len(found) == 1, (tag, found)
        values[tag] = found[0][1]
    return values


def test_two_ranks_draw_one_process_windows_and_validation_logs_each_source(mixture, tmp_path):
    cache = tmp_path / "cache"
    single = _fit(tmp_path / "single", mixture, cache, "--data.batch_size", "8")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _fit(tmp_path / "ddp", mixture, cache, "--data.batch_size", "4", "--trainer.devices", "2",
               "--trainer.strategy", "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = torch.load(tmp_path / "single" / "windows" / "rank0.pt")
    ranks = [torch.load(tmp_path / "ddp" / "windows" / f"rank{r}.pt") for r in (0, 1)]
    assert len(one) == 4 and all(len(r) == 4 for r in ranks)
    for step in range(4):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), one[step])
    val_single, val_ddp = _val(tmp_path / "single"), _val(tmp_path / "ddp")
    for tag, value in val_single.items():
        assert math.isclose(val_ddp[tag], value, rel_tol=1e-4), (tag, val_ddp[tag], value)
    per_source = [val_single[f"val/{n}/loss"] for n in NAMES]
    assert min(per_source) < val_single["val/loss"] < max(per_source)  # the pooled figure lies between them
