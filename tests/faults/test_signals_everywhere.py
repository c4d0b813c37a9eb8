"""Ctrl-C and SIGTERM outside fit's training loop: every command stops within a bounded time, exits 130 / 143,
says what it had finished and leaves nothing half-written; the data step's worker processes print nothing; a
second Ctrl-C while the interrupt's checkpoint is being written aborts it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, cli_env, run_cli
from fault_helpers import checkpoint_step, faults_env, signal_at
from llm_lit.data.tokens import BUNDLED_CORPUS

FIT = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding a 5-step debug run (its checkpoint and token cache)."""
    root = tmp_path_factory.mktemp("trained")
    result = run_cli([*FIT, "--trainer.max_steps", "5"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def _signal_at_batch(batch: int, name: str = "SIGTERM") -> list[str]:
    return ["--trainer.callbacks+=self_kill.SignalAtBatch", "--trainer.callbacks.batch", str(batch),
            "--trainer.callbacks.signal_name", name]


def test_predict_stopped_by_sigterm_exits_143_and_keeps_what_it_finished(trained, tmp_path):
    out = tmp_path / "p.jsonl"
    result = run_cli(["predict", "--ckpt_path", str(trained / DEBUG_CKPTS / "last.ckpt"), "--data.prompts",
                      '["a", "b", "c", "d", "e"]', "--data.predict_batch_size", "2", "--data.predictions_path", str(out),
                      "--model.sampling.max_new_tokens", "4", "--trainer.enable_progress_bar", "false",
                      *_signal_at_batch(2)], cwd=trained, env=faults_env())
    assert result.returncode == 143, result.stderr[-3000:]
    assert _last_line(result) == f"Stopped by SIGTERM: predict had finished 4 of 5 prompts; wrote their continuations to {out}."
    assert [json.loads(line)["prompt"] for line in out.read_text().splitlines()] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_stopped_by_sigterm_exit_143_saying_what_they_scored(trained, command):
    extra = ["--data.test_files", f'["{BUNDLED_CORPUS}"]'] if command == "test" else []
    result = run_cli([command, "--ckpt_path", str(trained / DEBUG_CKPTS / "last.ckpt"), "--data.val_batch_size", "8",
                      "--trainer.enable_progress_bar", "false", *extra, *_signal_at_batch(3)], cwd=trained,
                     env=faults_env())
    assert result.returncode == 143, result.stderr[-3000:]
    line = _last_line(result)
    assert line.startswith(f"Stopped by SIGTERM: {command} had scored 3 of ") and \
        line.endswith(" batches; no metrics were reported (they need every batch)."), line
    assert f"{command}/loss" not in result.stdout


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llm_lit", *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(proc: subprocess.Popen, words: str, timeout: float = 300) -> str:
    """Read `proc`'s stderr until a line holds `words`; returns what was read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"it ended before saying {words!r}:\n{''.join(seen)[-3000:]}")
        seen.append(line)
        if words in line:
            return "".join(seen)
    raise AssertionError(f"no {words!r} in time")


def _end(proc: subprocess.Popen, seen: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, seen + err)


@pytest.mark.slow
def test_sigterm_during_a_long_generation_stops_predict_in_seconds(trained):
    proc = _start(["predict", "--ckpt_path", str(trained / DEBUG_CKPTS / "last.ckpt"), "--data.prompts", '["a", "b"]',
                   "--data.predict_batch_size", "1", "--model.sampling.max_new_tokens", "1000000"], trained)
    seen = _wait_for(proc, "Loaded model weights")
    time.sleep(2)  # generating the first continuation, which would take hours
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    result = _end(proc, seen, timeout=60)
    assert time.monotonic() - sent < 30
    assert result.returncode == 143, result.stderr[-3000:]
    assert _last_line(result) == "Stopped by SIGTERM: predict had finished 0 of 2 prompts; nothing was written."
    assert not (trained / "runs" / "debug" / "version_0" / "predictions.jsonl").exists()


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    """A corpus whose tokenizer training and encoding take seconds (the bundled one, 12 times)."""
    path = tmp_path_factory.mktemp("corpus") / "big.txt"
    path.write_bytes(BUNDLED_CORPUS.read_bytes() * 12)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum, words", [(signal.SIGINT, "pre-tokenize"), (signal.SIGTERM, "encode")],
                         ids=["ctrl-c-while-training-the-tokenizer", "sigterm-to-the-group-while-encoding"])
def test_a_signal_during_the_data_step_stops_fit_leaving_nothing(big_corpus, tmp_path, signum, words):
    proc = _start([*FIT, "--data.train_files", f'["{big_corpus}"]', "--data.num_proc", "2",
                   "--data.tokenizer_sample_bytes", "100000000"], tmp_path)
    seen = _wait_for(proc, words)
    time.sleep(0.5)
    os.killpg(proc.pid, signum)  # the whole group, as a terminal's Ctrl-C or a scheduler does: workers too
    result = _end(proc, seen, timeout=120)
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    assert _last_line(result) == (f"Stopped by {signal.Signals(signum).name}: before training started, so nothing was "
                                  "trained or saved (nothing half-written is kept).")
    caches = list((tmp_path / ".llm_lit_cache").iterdir())
    assert all(not list(c.iterdir()) for c in caches), [list(c.iterdir()) for c in caches]  # no shard, no lock
    assert not [p for p in tmp_path.glob("runs/*/version_*") if p.is_dir()]  # no version folder


def test_a_second_ctrl_c_while_the_interrupt_checkpoint_is_written_aborts_it(tmp_path):
    stopped = run_cli([*FIT, *signal_at(6, "train_batch_start", "SIGINT"), "--trainer.plugins",
                       "self_kill.SignalDuringSave"], cwd=tmp_path, env=faults_env())
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert _last_line(stopped).startswith("Aborted by a second Ctrl-C; no checkpoint written")
    assert checkpoint_step(tmp_path / DEBUG_CKPTS / "last.ckpt") == 5  # the last regular checkpoint, untouched
    assert not list((tmp_path / DEBUG_CKPTS).glob(".*.tmp"))


def test_sigterm_stops_chat_waiting_for_input_with_exit_143(trained):
    proc = subprocess.Popen([sys.executable, "-m", "llm_lit", "chat", "--ckpt_path",
                             str(trained / DEBUG_CKPTS / "last.ckpt"), "--device", "cpu"], cwd=trained, env=cli_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = _wait_for(proc, "chat: ")  # the banner: loaded, now reading the next line
    os.kill(proc.pid, signal.SIGTERM)
    result = _end(proc, seen, timeout=60)
    assert result.returncode == 143, result.stderr[-3000:]
    assert _last_line(result) == "Stopped by SIGTERM."
