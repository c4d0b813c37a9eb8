"""`--ckpt_path FILE` is read once: validate/test/predict take the model config (links recomputed) and
the tokenizer (in memory) from that one read, and Lightning's restore reuses it while the file is
unchanged. The refusals of a mismatched architecture or tokenizer still hold."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from llm_lit.run.checkpoint import LoadedCheckpoint
from llm_lit.commands.cli import main
from llm_lit.commands.lightning_cli import LLMLitCLI
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.run.checkpoint_io import AtomicCheckpointIO

QUIET = ["--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 4-step `llm_lit fit` of debug.yaml (checkpoints in DEBUG_CKPTS, cache in .llm_lit_cache/)."""
    root = tmp_path_factory.mktemp("once")
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "4",
                      "--trainer.val_check_interval", "4", "--model.optimizer.warmup_steps", "1",
                      "--model.sample_prompts", "[]", *QUIET], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture()
def loads(monkeypatch) -> list:
    """Every `torch.load` call (by llm_lit or Lightning) made during the test."""
    calls: list = []
    original = torch.load

    def counting(f, *args, **kwargs):
        calls.append(str(f))
        return original(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls


@pytest.mark.parametrize("argv", [
    ["validate", "--data.val_batch_size", "512"],
    ["test", "--data.val_batch_size", "512", "--data.test_files", f'["{BUNDLED_CORPUS}"]'],
    ["predict", "--data.prompts", '["ROMEO:"]', "--model.sampling.max_new_tokens", "4",
     "--data.predictions_path", "preds.jsonl"],
], ids=["validate", "test", "predict"])
def test_evaluating_a_checkpoint_reads_it_once_and_writes_no_tokenizer_file(run_dir, loads, monkeypatch, argv):
    monkeypatch.chdir(run_dir)
    ckpt = str(DEBUG_CKPTS / "last.ckpt")
    assert main([argv[0], "--ckpt_path", ckpt, *argv[1:], *QUIET]) == 0
    assert loads == [ckpt]
    assert not list(Path(".llm_lit_cache").rglob("checkpoint-tokenizers"))


@pytest.mark.parametrize("ckpt", [str(DEBUG_CKPTS / "last.ckpt"), "last"], ids=["file", "last"])
def test_resuming_reads_the_checkpoint_once(run_dir, tmp_path, loads, monkeypatch, ckpt):
    shutil.copytree(run_dir / DEBUG_CKPTS, tmp_path / DEBUG_CKPTS)
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(DEBUG_CONFIG), "--ckpt_path", ckpt, "--trainer.max_steps", "5",
                 "--trainer.logger", "false", "--data.cache_dir", str(run_dir / ".llm_lit_cache"),
                 "--model.sample_prompts", "[]", *QUIET]) == 0
    assert len(loads) == 1 and loads[0].endswith(str(DEBUG_CKPTS / "last.ckpt"))
    assert torch.load(DEBUG_CKPTS / "last.ckpt", weights_only=True)["global_step"] == 5


class _Parsed(Exception):
    pass


class _ParseOnly(LLMLitCLI):
    def before_instantiate_classes(self) -> None:
        raise _Parsed(self.config)


def test_the_checkpoint_config_wins_and_links_are_recomputed(run_dir, monkeypatch):
    """A config file saying otherwise is overridden by the checkpoint's architecture, and the parse-time
    link carries the checkpoint's context_length into the data settings."""
    monkeypatch.chdir(run_dir)
    with pytest.raises(_Parsed) as parsed:
        _ParseOnly(args=["validate", "--config", str(DEBUG_CONFIG), "--model.config.context_length", "16",
                         "--model.config.d_model", "64", "--data.tokenizer_path", "nowhere.json",
                         "--ckpt_path", str(DEBUG_CKPTS / "last.ckpt")])
    config = parsed.value.args[0].validate
    assert config.model.config.context_length == 32 and config.data.context_length == 32
    assert config.model.config.d_model == 32
    assert config.data.vocab_size == 300 and config.data.tokenizer_path is None


def test_the_checkpoint_io_reuses_the_read_only_while_the_file_is_unchanged(run_dir, tmp_path, loads):
    path = tmp_path / "a.ckpt"
    shutil.copy(run_dir / DEBUG_CKPTS / "last.ckpt", path)
    io = AtomicCheckpointIO(preloaded=LoadedCheckpoint.read(path))
    assert len(loads) == 1
    first = io.load_checkpoint(path)
    assert len(loads) == 1 and first["global_step"] == 4  # handed over, not read again
    assert io.load_checkpoint(path)["global_step"] == 4 and len(loads) == 2  # handed over once only

    io = AtomicCheckpointIO(preloaded=LoadedCheckpoint.read(path))
    changed = dict(first, global_step=9)
    torch.save(changed, tmp_path / "b.ckpt")
    os.replace(tmp_path / "b.ckpt", path)  # how every checkpoint is (re)written: a new file renamed over it
    assert io.load_checkpoint(path)["global_step"] == 9  # a changed file is read anew


def test_resuming_with_another_tokenizer_is_refused(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.txt").write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[200_000:260_000], encoding="utf-8")
    assert main(["fit", "--config", str(DEBUG_CONFIG), "--ckpt_path", str(run_dir / DEBUG_CKPTS / "last.ckpt"),
                 "--data.train_files", '["other.txt"]', "--trainer.max_steps", "5", "--trainer.logger", "false",
                 "--model.sample_prompts", "[]", *QUIET]) == 2
    assert "The checkpoint's tokenizer differs from the data's tokenizer" in capsys.readouterr().err
