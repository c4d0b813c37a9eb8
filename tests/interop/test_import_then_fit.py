"""`llm_lit import` a Hugging Face folder, then `llm_lit fit` continues training from its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG
from interop_helpers import VOCAB

from llm_lit.run.checkpoint import load_checkpoint, read_checkpoint
from llm_lit.commands.cli import main
from llm_lit.interop import load_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def hf_folder(tok, tmp_path_factory) -> Path:
    """A GPT2LMHeadModel written by transformers itself (random weights of std 0.2) plus our tokenizer.json."""
    folder = tmp_path_factory.mktemp("hf_gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                     activation_function="gelu", initializer_range=0.2)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tok.save_hf(folder / "tokenizer.json")
    return folder


def test_import_writes_a_checkpoint_and_config_that_fit_continues_from(hf_folder, tok, tmp_path, monkeypatch, capsys):
    out = tmp_path / "imported"
    assert main(["import", "--hf_dir", str(hf_folder), "--output", str(out)]) == 0
    assert "llm_lit fit" in capsys.readouterr().out
    imported, imported_tok = load_checkpoint(out / "model.ckpt")
    reference, _ = load_hf(hf_folder)
    for key, value in reference.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value)
    assert imported_tok.fingerprint() == tok.fingerprint()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["config"] == reference.config.to_dict()
    assert config["data"] == {"tokenizer_path": str(out / "tokenizer.json"), "vocab_size": VOCAB}

    monkeypatch.chdir(tmp_path)
    argv = ["fit", "--config", str(DEBUG_CONFIG), "--config", str(out / "config.yaml"), "--ckpt_path", str(out / "model.ckpt"),
            "--trainer.max_steps", "3", "--trainer.val_check_interval", "3", "--trainer.enable_progress_bar", "false",
            "--model.optimizer.warmup_steps", "1",
            "--data.cache_dir", str(tmp_path / "cache"), "--model.sample_prompts", "[]"]
    assert main(argv) == 0, capsys.readouterr().err
    checkpoint = read_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    assert checkpoint["global_step"] == 3  # counted from 0: a fresh run, not a resumed one
    tuned, tuned_tok = load_checkpoint(tmp_path / DEBUG_CKPTS / "last.ckpt")
    assert tuned.config == reference.config and tuned_tok.fingerprint() == tok.fingerprint()
    # Three small AdamW steps moved every weight a little away from the imported ones (std 0.2);
    # a model that started from a fresh init (std 0.02) would be far from them.
    for key, value in reference.state_dict().items():
        delta = (tuned.state_dict()[key] - value).abs().max().item()
        assert 0 < delta < 0.05, (key, delta)


def test_import_builds_neither_a_trainer_nor_a_lightning_module(hf_folder, tmp_path, monkeypatch):
    import lightning

    from llm_lit.training.module import LanguageModel

    def refuse(*args, **kwargs):
        raise AssertionError("llm_lit import built a Trainer or a LanguageModel")

    monkeypatch.setattr(lightning.Trainer, "__init__", refuse)
    monkeypatch.setattr(LanguageModel, "__init__", refuse)
    assert main(["import", "--hf_dir", str(hf_folder), "--output", str(tmp_path / "out")]) == 0
    checkpoint = read_checkpoint(tmp_path / "out" / "model.ckpt")
    assert checkpoint["global_step"] == 0 and checkpoint["optimizer_states"] == []
    assert set(checkpoint["llm_lit"]) == {"version", "model_config", "tokenizer", "skipped_steps"}


def test_import_refuses_to_overwrite(hf_folder, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    assert main(["import", "--hf_dir", str(hf_folder), "--output", str(tmp_path / "out")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["import", "--output", str(tmp_path / "o2")]) == 2
    assert "required: hf_dir; see llm_lit import --help" in capsys.readouterr().err
