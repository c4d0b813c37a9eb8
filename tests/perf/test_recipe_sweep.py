"""benchmarks/recipe_sweep.py and recipe_final.sh: the options list, a step-mode sweep end to end, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ROOT / "benchmarks" / "recipe_sweep.py"


def test_list_names_every_option_with_its_overrides() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from recipe_sweep import OPTION_CONFIGS, OPTIONS

    out = subprocess.run([sys.executable, str(SWEEP), "--list"], capture_output=True, text=True, check=True).stdout
    for name, (_, overrides) in OPTIONS.items():
        assert f"{name:16s}" in out and " ".join(overrides) in out
    assert all(path.is_file() for path in OPTION_CONFIGS.values())


@pytest.mark.slow
def test_a_step_mode_sweep_writes_results_and_a_table(tmp_path: Path) -> None:
    """Two options, one seed, 6 steps of the debug config, one run at a time: each run validates at its
    last step (the config's own val_check_interval is larger) and the table compares it with default."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(SWEEP), "--config", str(ROOT / "configs" / "debug.yaml"),
                           "--steps", "6", "--options", "default,qk-norm", "--seeds", "7", "--parallel", "1",
                           "--workdir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert sorted(r["name"] for r in runs) == ["default", "qk-norm"]
    for r in runs:
        assert r["returncode"] == 0 and r["steps"] == 6 and math.isfinite(r["final_bpb"])
        assert "--time_budget null" in r["command"]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "6 steps per run" in table and "| qk-norm |" in table and "| default |" in table
    assert (tmp_path / "runs" / "cache").is_dir()  # step mode: one token cache for every run


def test_final_script_refuses_a_missing_nanogpt_checkout(tmp_path: Path) -> None:
    env = dict(os.environ, NANOGPT=str(tmp_path / "nowhere"))
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "recipe_final.sh"), "5", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no nanoGPT checkout at {tmp_path / 'nowhere'}; set NANOGPT=/path/to/nanoGPT."
    assert not (tmp_path / "out").exists()


def test_sweep_refuses_more_runs_at_once_than_cores(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SWEEP), "--steps", "1", "--parallel", str((os.cpu_count() or 1) + 1),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "--parallel must be between 1 and" in proc.stderr


def test_resume_keeps_the_finished_runs_under_the_same_conditions(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from recipe_sweep import finished_runs

    meta = {"budget_s": 600.0, "steps": None, "parallel": 2, "threads": 1, "config": "shakespeare.yaml"}
    results = tmp_path / "results.json"
    assert finished_runs(results, meta) == []  # nothing to keep yet
    runs = [{"name": "default", "seed": 1, "final_bpb": 2.05}, {"name": "alibi", "seed": 1, "final_bpb": math.nan}]
    results.write_text(json.dumps({"meta": meta, "runs": runs}))
    assert [r["name"] for r in finished_runs(results, meta)] == ["default"]  # a failed run is run again
    for changed in ({"budget_s": 300.0}, {"budget_s": None, "steps": 100}, {"threads": 2}, {"config": "enwiki.yaml"}):
        assert finished_runs(results, {**meta, **changed}) == [], changed
