"""The speed benchmarks run end to end and print both sides and the ratio (slow: they spawn processes)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_lit.data.tokens import BUNDLED_CORPUS

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_train_throughput_prints_ours_reference_and_ratios() -> None:
    out = run("train_throughput.py", "--config", "debug", "--steps", "3", "--warmup", "2", "--repeats", "1")
    assert "reference" in out and "ours" in out and "unknown peak" in out
    ours_row = next(line for line in out.splitlines() if line.startswith("off") and " ours " in line)
    ratio, memory_ratio = (float(v) for v in ours_row.split()[-2:])
    assert ratio > 0 and memory_ratio > 0


@pytest.mark.slow
def test_data_loading_prints_sampling_and_consumption() -> None:
    out = run("data_loading.py", "--tokens", "200000", "--batches", "5", "--repeats", "1", "--model-steps", "0")
    assert "ours: RandomWindows.batch" in out and "reference: nanoGPT get_batch" in out
    assert "H100 bf16 at 50% MFU" in out


@pytest.mark.slow
def test_data_scale_prints_each_figure_on_a_tiny_corpus(tmp_path) -> None:
    data = tmp_path / "data"  # the bundled corpus standing in for the public corpora, which a fresh clone lacks
    data.mkdir()
    for name in ("gutenberg_train.txt", "enwiki_train.txt"):
        shutil.copyfile(BUNDLED_CORPUS, data / name)
    out = run("data_scale.py", "--size-mb", "3", "--small-mb", "1", "--vocab-size", "600", "--encode-mb", "1",
              "--encode-vocab", "600", "--repeats", "1", "--old-commit", "none", "--sections", "encode,cold,compression",
              "--workdir", str(tmp_path / "work"), "--data-dir", str(data))
    assert "ids identical (ours 1 and 2 processes, tiktoken single and batch): True" in out
    for label in ("2 processes vs 1 process", "2 processes vs tiktoken's best", "peak RSS, ",
                  "bytes per token"):
        line = next(line for line in out.splitlines() if label in line and "ratio" in line)
        assert float(line.split("ratio")[1].split()[0]) > 0, line
    assert "largest temporary file 0.00 MB" in out  # no copy of the corpus, only small sidecars


@pytest.mark.slow
def test_data_scale_against_the_old_code_and_ddp(tmp_path) -> None:
    out = run("data_scale.py", "--size-mb", "3", "--small-mb", "1", "--vocab-size", "600", "--repeats", "1",
              "--sections", "cold,warm,ddp", "--workdir", str(tmp_path))
    assert "wall time, ours vs old code" in out and "corpus vs tinyshakespeare" in out
    ours = next(line for line in out.splitlines() if line.strip().startswith("ours") and "manifest reads" in line)
    assert ours.count("1 manifest reads") == 2 and ours.count("0.0 MB of corpus read") == 2


@pytest.mark.slow
def test_data_formats_prints_each_figure_on_the_bundled_corpus(tmp_path) -> None:
    out = run("data_formats.py", "--big-mb", "4", "--small-mb", "2", "--repeats", "1", "--vocab-size", "1000",
              "--encode-vocab", "600", "--workdir", str(tmp_path))
    assert "ids equal to the .txt path: True" in out and "ids identical: True" in out
    for label in ("parquet vs the same text", "jsonl.zst vs the same text", "4 MB vs 2 MB of text", "2 processes vs 1",
                  "web ", "Parquet files"):
        line = next(line for line in out.splitlines() if label in line and "ratio" in line)
        assert float(line.split("ratio")[1].split()[0]) > 0, line
    assert "0 object reads, 0 bytes downloaded: True" in out and "gives the same windows: True" in out


@pytest.mark.slow
def test_eval_callback_cost_prints_the_share_and_the_curve() -> None:
    out = run("eval_callback_cost.py", "--steps", "3")
    assert "eval / run wall time: " in out and "next_line step     3: acc " in out
