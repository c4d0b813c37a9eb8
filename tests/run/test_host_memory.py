"""The command line keeps freed memory for reuse (glibc's malloc thresholds), so a step does not fault its
tensors' pages back in; a user's own malloc settings are left alone."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

import llm_lit.commands.cli as cli
from llm_lit.run.host_memory import keep_freed_memory, user_chose_malloc_settings

GLIBC = platform.system() == "Linux" and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")

# A few training steps of a layer with 32 MiB activations; prints the page faults of the last eight.
FAULTS = """
import resource, sys
from llm_lit.run.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
import torch
layer, x = torch.nn.Linear(512, 4096), torch.randn(2048, 512)
def step():
    layer.zero_grad(set_to_none=True)
    torch.nn.functional.gelu(layer(x)).square().mean().backward()
step(), step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def page_faults(mode: str, env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@needs_glibc
def test_kept_memory_is_reused_without_page_faults():
    applied, kept = page_faults("keep", clean_env())
    _, plain = page_faults("plain", clean_env())
    assert applied == "True"
    assert plain > 8 * 8_000  # glibc's own thresholds: each step maps its 32 MiB tensors afresh (8,192 pages each)
    assert kept < plain / 4


@needs_glibc
def test_settings_reach_the_processes_it_starts():
    code = ("import os, subprocess, sys\nfrom llm_lit.run.host_memory import keep_freed_memory\nkeep_freed_memory()\n"
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"MALLOC_MMAP_THRESHOLD_\"], "
            "os.environ[\"MALLOC_TRIM_THRESHOLD_\"])'], capture_output=True, text=True).stdout)")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(1 << 30), str(1 << 30)]


@needs_glibc
def test_a_users_own_malloc_settings_are_left_alone():
    applied, faults = page_faults("keep", clean_env(MALLOC_TRIM_THRESHOLD_="0"))
    assert applied == "False"
    assert faults > 8 * 8_000


@pytest.mark.parametrize("environ, chose", [
    ({}, False),
    ({"PATH": "/bin", "MALLOC_": "x"}, False),  # no such variable
    ({"MALLOC_ARENA_MAX": "2"}, False),  # not glibc's spelling (its variables end in an underscore)
    ({"MALLOC_ARENA_MAX_": "2"}, True),
    ({"MALLOC_MMAP_THRESHOLD_": "131072"}, True),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, True),
    ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, False),
])
def test_user_chose_malloc_settings(environ, chose):
    assert user_chose_malloc_settings(environ) is chose


def test_lightning_commands_keep_freed_memory_and_other_commands_do_not(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("kept"))
    monkeypatch.setattr(cli, "_lightning_command", lambda argv: 0)
    monkeypatch.setattr(cli, "run_extra_command", lambda name, argv: 0)
    assert cli.main(["fit", "--config", "x.yaml"]) == 0
    assert calls == ["kept"]
    assert cli.main(["plot"]) == 0
    assert calls == ["kept"]


def test_keep_freed_memory_reports_whether_it_applied(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert keep_freed_memory() is False
