"""Fixtures of the kill-and-resume tests: one uninterrupted reference run per module (its token cache: `cache`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import finished_run


@pytest.fixture(scope="module")
def reference(request, tmp_path_factory, cache) -> Path:
    """The folder of one uninterrupted `llm_lit` run of the test module's `ARGS` (token cache in `cache`)."""
    root = tmp_path_factory.mktemp(f"{request.module.__name__}-uninterrupted")
    return finished_run([*request.module.ARGS, "--data.cache_dir", str(cache)], root)
