"""`llm_lit eval` through the CLI: every bad input in one line, and a tiny checkpoint end to end."""

from __future__ import annotations

import json

import pytest
from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, cli_env, run_cli, scalars

TASKS = "shakespeare_next_line,shakespeare_ppl"


def _error(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_without_the_eval_extra_it_names_the_install_line(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['lm_eval'] = None\n")
    env = cli_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    line = _error(run_cli(["eval", "--ckpt_path", "x.ckpt", "--tasks", "hellaswag"], tmp_path, env=env))
    assert "pip install 'llm_lit[eval]'" in line


@pytest.mark.parametrize("args, expected", [
    (["--tasks", "hellaswag", "--include_path", "no_such_folder"], "--include_path 'no_such_folder' is not a folder"),
    (["--tasks", "hellaswag", "--limit", "0"], "--limit must be a positive number"),
    (["--tasks", "hellaswag", "--limit", "-5"], "--limit must be a positive number"),
    (["--tasks", " , "], "--tasks names no task"),
])
def test_bad_settings_are_one_line(tmp_path, args, expected):
    assert expected in _error(run_cli(["eval", "--ckpt_path", "x.ckpt", *args], tmp_path))


@pytest.mark.slow
def test_unknown_task_and_unreadable_checkpoint(tmp_path):
    line = _error(run_cli(["eval", "--ckpt_path", "x.ckpt", "--tasks", "shakespeare_nextline"], tmp_path))
    assert "Unknown task 'shakespeare_nextline'; did you mean 'shakespeare_next_line'" in line
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    line = _error(run_cli(["eval", "--ckpt_path", "bad.ckpt", "--tasks", "shakespeare_ppl"], tmp_path))
    assert "bad.ckpt" in line


@pytest.mark.slow
def test_a_tiny_checkpoint_end_to_end(tmp_path):
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--model.config.context_length", "64",
                   "--trainer.max_steps", "10", "--torch_threads", "1"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    ckpt = DEBUG_CKPTS / "last.ckpt"
    result = run_cli(["eval", "--ckpt_path", str(ckpt), "--tasks", TASKS, "--limit", "12", "--batch_size", "8"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shakespeare_next_line" in result.stdout and "acc_norm" in result.stdout  # the harness's table
    saved = json.loads((tmp_path / DEBUG_RUN / "eval" / "last.json").read_text())
    assert 0 <= saved["results"]["shakespeare_next_line"]["acc,none"] <= 1
    logged = scalars(tmp_path / DEBUG_RUN, "eval/shakespeare_ppl/bits_per_byte")
    assert [step for step, _ in logged] == [10]
    assert logged[0][1] == pytest.approx(saved["results"]["shakespeare_ppl"]["bits_per_byte,none"], rel=1e-6)
