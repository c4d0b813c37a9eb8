"""A simulated two-node job on this machine: two `llm_lit fit` launches with `--trainer.num_nodes 2
--trainer.devices 1`, NODE_RANK 0 and 1. With a cache folder both nodes share, exactly one process builds
it and the other waits and opens it; with a cache folder per node, each node builds its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import free_port
from llm_lit.data.tokens import BUNDLED_CORPUS, open_token_cache

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"


def _two_nodes(tmp_path: Path, caches: list[Path]) -> list[str]:
    """Run both nodes to the end; returns each node's stderr."""
    data = BUNDLED_CORPUS.read_bytes()
    corpus = [tmp_path / "a.txt", tmp_path / "b.txt"]
    corpus[0].write_bytes(data[:300_000])
    corpus[1].write_bytes(data[300_000:500_000])
    port = str(free_port())
    procs = []
    for rank, cache in enumerate(caches):
        node = tmp_path / f"node{rank}"
        node.mkdir()
        env = dict(os.environ, PYTHONPATH=str(REPO), NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   OMP_NUM_THREADS="1")
        args = ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", f"[{corpus[0]},{corpus[1]}]",
                "--data.cache_dir", str(cache), "--trainer.num_nodes", "2", "--trainer.devices", "1",
                "--trainer.strategy", "ddp", "--trainer.max_steps", "3", "--model.optimizer.warmup_steps", "1",
                "--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2",
                "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]", "--trainer.callbacks", "[]",
                "--trainer.enable_checkpointing", "false", "--trainer.logger", "false", "--data.num_proc", "1"]
        procs.append(subprocess.Popen([sys.executable, "-m", "llm_lit", *args], cwd=node, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    errs = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=400)
            errs.append(err)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            proc.kill()
    return errs


def _builds(err: str) -> int:
    return sum(line.startswith("token cache: building") for line in err.splitlines())


@pytest.mark.slow
def test_a_shared_cache_is_built_exactly_once(tmp_path):
    errs = _two_nodes(tmp_path, [tmp_path / "shared", tmp_path / "shared"])
    assert sorted(_builds(err) for err in errs) == [0, 1]
    (folder,) = (tmp_path / "shared").iterdir()
    assert open_token_cache(folder) is not None and not (folder / ".build.lock").exists()


@pytest.mark.slow
def test_node_local_caches_are_built_once_per_node(tmp_path):
    errs = _two_nodes(tmp_path, [tmp_path / "local0", tmp_path / "local1"])
    assert [_builds(err) for err in errs] == [1, 1]
    (a,), (b,) = (tmp_path / "local0").iterdir(), (tmp_path / "local1").iterdir()
    ca, cb = open_token_cache(a), open_token_cache(b)
    for split in ("train", "val"):
        assert ca.split(split).tolist() == cb.split(split).tolist()
