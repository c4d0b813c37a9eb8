"""What a run finds in, and leaves in, its folders: a second fit into the same run version is refused
while the first runs (and welcome once it is gone, however it ended), a killed run's half-written
checkpoint files are cleaned up, `predict` refuses an output path that is a folder before generating,
and FSDP on a CPU is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from cli_helpers import DEBUG_CONFIG, cli_env, one_line_error
from llm_lit.run.checkpoint import write_checkpoint
from llm_lit.commands.cli import main
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.run.lock import RunLock, lock_path
from tokenizer import Tokenizer

VERSION = Path("runs") / "debug-small" / "version_0"  # debug.yaml on small.txt
CHECKPOINTS = VERSION / "checkpoints"


def fit_args(*extra: str) -> list[str]:
    """A 5-step fit of debug.yaml on the small corpus (run debug-small), no logger."""
    return ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", '["small.txt"]', "--data.vocab_size", "270",
            "--trainer.max_steps", "5", "--model.optimizer.warmup_steps", "1", "--trainer.enable_progress_bar",
            "false", "--trainer.logger", "false", "--model.sample_prompts", "[]", *extra]


def test_a_second_fit_into_a_version_held_by_a_live_run_is_refused(workdir, capsys):
    assert main(fit_args()) == 0
    holder = RunLock.acquire(workdir / VERSION)  # as a running fit holds it (this process stands in for it)
    resume = fit_args("--ckpt_path", "last", "--trainer.max_steps", "7")
    err = one_line_error(resume, capsys)
    assert err.startswith(f"error: Another llm_lit fit (pid {os.getpid()} on ")
    assert f"is writing checkpoints into '{VERSION}'" in err
    assert "--run_name or --out_dir" in err
    assert not (workdir / "runs" / "debug-small" / "version_1").exists()  # refused before making anything
    holder.release()
    assert main(resume) == 0
    assert torch.load(workdir / CHECKPOINTS / "last.ckpt", weights_only=True)["global_step"] == 7


def test_a_refused_or_failed_fit_leaves_no_version_folder(workdir, capsys):
    one_line_error(fit_args("--data.train_files", '["missing.txt"]'), capsys)
    assert not list((workdir / "runs").glob("*/version_*"))


def test_the_lock_of_a_killed_run_does_not_block_the_next(workdir):
    # a process that takes the lock and dies by SIGKILL, leaving the lock file with its record behind
    script = ("import os, signal, sys; from llm_lit.run.lock import RunLock; "
              "lock = RunLock.acquire(sys.argv[1]); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script, str(workdir / CHECKPOINTS)], env=cli_env())
    assert killed.returncode < 0
    record = json.loads(lock_path(workdir / CHECKPOINTS).read_text())
    assert record["pid"] != os.getpid()
    lock = RunLock.acquire(workdir / CHECKPOINTS)
    assert lock.held and json.loads(lock_path(workdir / CHECKPOINTS).read_text())["pid"] == os.getpid()
    lock.release()


def test_temporary_files_of_a_killed_checkpoint_write_are_removed(workdir):
    assert main(fit_args()) == 0
    stale = [workdir / CHECKPOINTS / ".last.ckpt.k2j4h1x0.tmp", workdir / CHECKPOINTS / ".best-step10.ckpt.a8b7c6d5.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = workdir / CHECKPOINTS / "notes.tmp"
    keep.write_text("not ours")
    assert main(fit_args("--ckpt_path", "last", "--trainer.max_steps", "6")) == 0  # resumes into that version
    assert not any(path.exists() for path in stale) and keep.exists()


def test_predictions_path_that_is_a_folder_is_refused_before_generating(workdir, capsys):
    model = TransformerLM(ModelConfig(vocab_size=260, context_length=16, d_model=16, n_layers=1, n_heads=2))
    write_checkpoint(model, Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]), workdir / "m.ckpt")
    (workdir / "out").mkdir()
    err = one_line_error(["predict", "--ckpt_path", "m.ckpt", "--data.prompts", '["ROMEO:"]', "--data.predictions_path",
                      "out", "--trainer.enable_progress_bar", "false"], capsys)
    assert "--data.predictions_path 'out' is a folder" in err
    assert "ROMEO:" not in capsys.readouterr().out  # nothing was generated (and lost)


def test_fsdp_on_a_cpu_is_one_line(workdir, capsys):
    err = one_line_error(fit_args("--trainer.strategy", "fsdp", "--trainer.accelerator", "cpu"), capsys)
    assert "--trainer.strategy fsdp shards the model across CUDA GPUs but --trainer.accelerator is cpu" in err
