"""Fixtures of the kill-and-resume tests: one token cache and one uninterrupted reference run per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A token cache folder shared by every run of the test module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(request, tmp_path_factory, cache) -> Path:
    """The folder of one uninterrupted `llm_lit` run of the test module's `ARGS` (token cache in `cache`)."""
    root = tmp_path_factory.mktemp(f"{request.module.__name__}-uninterrupted")
    result = run_cli([*request.module.ARGS, "--data.cache_dir", str(cache)], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root
