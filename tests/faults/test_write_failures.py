"""A checkpoint write that fails inside torch (a full disk, a file-size limit: torch's zip writer raises a
`RuntimeError` that names no reason) is one line naming the file and the reason, and the previous checkpoint
stays as it was."""

from __future__ import annotations

import errno
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, cli_env, run_cli
from fault_helpers import checkpoint_step
from llm_lit.errors import UserError
from llm_lit.run.checkpoint_io import AtomicCheckpointIO


def test_a_torch_write_failure_on_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 5}, path)
    good = path.read_bytes()
    real_open = open

    def torch_save_on_a_full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if "a" in mode:  # the byte appended to learn the reason meets the full disk too
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr("builtins.open", open_on_a_full_disk)
    with pytest.raises(UserError, match=r"^Cannot write the checkpoint '.*last.ckpt' \(No space left on device\); "
                                        r"free some space \(the previous checkpoint is intact\)"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 10}, path)
    monkeypatch.undo()
    assert path.read_bytes() == good and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_another_runtime_error_of_torch_save_is_not_taken_for_a_write_failure(tmp_path, monkeypatch):
    def torch_save_failing(obj, f, *args, **kwargs):
        raise RuntimeError("something unrelated to writing")

    monkeypatch.setattr(torch, "save", torch_save_failing)
    with pytest.raises(RuntimeError, match="something unrelated"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_a_fit_whose_checkpoint_write_fails_in_torch_is_one_line_and_keeps_the_previous_one(tmp_path):
    """A real failed write during fit: the resumed run's checkpoints (about 680 kB) meet a 300 kB file-size limit."""
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--torch_threads", "1"]
    first = run_cli([*args, "--trainer.max_steps", "5"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / DEBUG_CKPTS / "last.ckpt"
    good = last.read_bytes()
    result = subprocess.run([sys.executable, "-m", "llm_lit", *args, "--trainer.max_steps", "10", "--ckpt_path", "last"],
                            cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
                            preexec_fn=_limit_file_size(300_000))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: Cannot write the checkpoint '{tmp_path / DEBUG_CKPTS}/") and \
        "(File too large)" in line, line
    assert last.read_bytes() == good and checkpoint_step(last) == 5
    assert not list((tmp_path / DEBUG_CKPTS).glob(".*.tmp"))
