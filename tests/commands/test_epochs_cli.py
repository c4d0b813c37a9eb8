"""`llm_lit fit --trainer.max_epochs N` end to end: two DDP ranks together visit every window of an epoch exactly
once, the progress bar counts real epochs and batches, and every bad value is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_lit.commands.cli import main
from llm_lit.data import TextDataModule
from llm_lit.data.tokens import BUNDLED_CORPUS

from cli_helpers import DEBUG_CONFIG, cli_env

HERE = Path(__file__).resolve().parent
STRIDE, CONTEXT = 24, 32


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    return path


def _fit(root: Path, corpus: Path, *extra: str) -> subprocess.CompletedProcess:
    env = cli_env()
    env["PYTHONPATH"] = str(HERE) + os.pathsep + env["PYTHONPATH"]  # window_recorder
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "-1", "--trainer.max_epochs", "1",
            "--data.train_files", f"[{corpus}]", "--data.cache_dir", str(root / "cache"), "--data.stride", str(STRIDE),
            "--model.optimizer.warmup_steps", "2", "--model.sample_prompts", "[]", "--trainer.val_check_interval", "1000",
            "--trainer.callbacks+=window_recorder.WindowRecorder", "--trainer.callbacks.dirpath", str(root / "windows"),
            *extra]
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_two_ddp_ranks_visit_every_window_of_an_epoch_exactly_once(corpus, tmp_path):
    result = _fit(tmp_path, corpus, "--data.batch_size", "16", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                  "--torch_threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    data = TextDataModule(train_files=[str(corpus)], cache_dir=str(tmp_path / "cache"), vocab_size=300,
                          context_length=CONTEXT)
    data.setup("fit")
    tokens = data.train_tokens[0:len(data.train_tokens)]
    num_windows = (len(tokens) - CONTEXT - 1) // STRIDE + 1
    start_of = {tuple(tokens[k * STRIDE:k * STRIDE + CONTEXT].tolist()): k for k in range(num_windows)}
    assert len(start_of) == num_windows  # every window's tokens differ, so rows name their windows
    ranks = [torch.load(tmp_path / "windows" / f"rank{r}.pt") for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == -(-num_windows // 32)
    seen = [start_of[tuple(row.tolist())] for batches in ranks for x in batches for row in x]
    assert sorted(seen) == list(range(num_windows))
    # the progress bar counts this epoch's micro-batches, not an endless stream
    assert "Epoch 0/0" in result.stdout and f"{len(ranks[0])}/{len(ranks[0])}" in result.stdout


# ---------------------------------------------------------------------- bad values, in-process
@pytest.mark.parametrize("extra, message", [
    (["--trainer.max_epochs", "2", "--data.stride", "0"], "error: Invalid data settings: stride must be a positive integer (got 0); fix these --data values."),
    (["--trainer.max_epochs", "-1", "--data.stride", "16"],
     "error: data.stride (16) applies only to epochs of windows; pass --trainer.max_epochs N (training windows are "
     "random otherwise) or drop data.stride."),
    (["--trainer.max_epochs", "0"], "error: trainer.max_epochs must be a positive number of epochs (got 0); pass e.g. "
                                    "--trainer.max_epochs 3, or leave it unset to train for trainer.max_steps."),
    (["--trainer.max_epochs", "2", "--trainer.max_steps", "0"], "error: Set trainer.max_steps (e.g. --trainer.max_steps 2000)"),
])
def test_bad_epoch_settings_are_one_line(capsys, tmp_path, monkeypatch, corpus, extra, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    argv = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "-1", "--data.train_files", f"[{corpus}]",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--model.optimizer.warmup_steps", "1", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    assert err.splitlines()[-1].startswith(message), err  # after the token cache's progress lines, if any
