"""Shared by every test folder: pytest puts this folder on `sys.path` (it holds a conftest.py), so
`from cli_helpers import run_cli` works from every test folder; and the fixtures below."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_lit.data.tokens import BUNDLED_CORPUS


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the default run: one worker per core), each worker and the CLI runs it starts use one
    thread, so that the workers share the cores instead of fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working folder, made the current one (logs, checkpoints and token caches land there), with a small
    corpus in it (`small.txt`, 60 KB of the bundled one); LLM_LIT_DEBUG unset, so errors are one line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    (tmp_path / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    return tmp_path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A token cache folder shared by every run of a test module (`--data.cache_dir`)."""
    return tmp_path_factory.mktemp("cache")
