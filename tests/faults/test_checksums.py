"""A checkpoint is verified on every load: a tensor whose bytes changed after saving (the zip
structure intact), or weights holding NaN / infinity, are refused in one line naming the tensor
by resume, validate, test, predict and export; checkpoints written before checksums still load."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from llm_lit.run.checkpoint import read_checkpoint, write_checkpoint
from llm_lit.commands.cli import main
from llm_lit.run.checksums import CHECKSUMS_KEY, checksums, structure_text, tensor_crc, verify_checksums
from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer

TENSOR = "model.layers.0.attn.q_proj.weight"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding `runs/debug/version_0/checkpoints/last.ckpt` of a 6-step debug run (and its token cache)."""
    root = tmp_path_factory.mktemp("checksums")
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "6", "--trainer.enable_progress_bar",
                      "false", "--trainer.val_check_interval", "6", "--model.sample_prompts", "[]"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def flip_bytes_of(path: Path, name: str, offset: int = 8, count: int = 4) -> None:
    """Change `count` bytes of the state_dict tensor `name` inside the checkpoint file, in place (zip intact)."""
    tensor = torch.load(path, map_location="cpu", weights_only=True)["state_dict"][name]
    data = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    raw = bytearray(path.read_bytes())
    start = raw.find(data)
    assert start >= 0 and raw.find(data, start + 1) < 0, "the tensor's bytes must occur once in the file"
    for i in range(start + offset, start + offset + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _copy(trained: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the trained folder's checkpoints and token cache in `tmp_path`, made the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    shutil.copytree(trained / "runs", tmp_path / "runs")
    shutil.copytree(trained / ".llm_lit_cache", tmp_path / ".llm_lit_cache")
    return tmp_path / DEBUG_CKPTS / "last.ckpt"


def _commands(ckpt: Path, tmp_path: Path) -> dict[str, list[str]]:
    common = ["--trainer.enable_progress_bar", "false"]
    return {
        "resume": ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "8", "--ckpt_path", "last", *common],
        "validate": ["validate", "--ckpt_path", str(ckpt), *common],
        "test": ["test", "--ckpt_path", str(ckpt), *common],
        "predict": ["predict", "--ckpt_path", str(ckpt), "--data.prompts", '["ROMEO:"]', *common],
        "export": ["export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "hf")],
    }


def _assert_refused(argv: list[str], capsys, words: str) -> None:
    """Running the CLI (in this process) on `argv` exits 2 with one `error:` line holding `words`."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and words in last, last


@pytest.mark.parametrize("command", ["resume", "validate", "test", "predict", "export"])
def test_a_tensor_with_flipped_bytes_is_refused_naming_it(trained, tmp_path, monkeypatch, capsys, command):
    ckpt = _copy(trained, tmp_path, monkeypatch)
    flip_bytes_of(ckpt, TENSOR)
    _assert_refused(_commands(ckpt, tmp_path)[command], capsys,
                    f"is corrupt: the tensor 'state_dict/{TENSOR}' differs from what was saved")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("command", ["resume", "predict"])
def test_non_finite_weights_are_refused_on_load_naming_the_tensor(trained, tmp_path, monkeypatch, capsys, command):
    ckpt = _copy(trained, tmp_path, monkeypatch)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint.pop(CHECKSUMS_KEY)
    checkpoint["state_dict"][TENSOR][0, 0] = math.nan  # as an older llm_lit, or another tool, could have saved it
    torch.save({**checkpoint, CHECKSUMS_KEY: checksums(checkpoint)}, ckpt)
    _assert_refused(_commands(ckpt, tmp_path)[command], capsys, f"holds NaN or infinite weights in '{TENSOR}'")


def test_a_checkpoint_written_before_checksums_loads_with_a_note(trained, tmp_path, monkeypatch, capsys):
    ckpt = _copy(trained, tmp_path, monkeypatch)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in checkpoint.items() if k != CHECKSUMS_KEY}, ckpt)
    assert main(_commands(ckpt, tmp_path)["validate"]) == 0
    assert "has no checksums (written by llm_lit before they were recorded)" in capsys.readouterr().err
    assert main(_commands(ckpt, tmp_path)["resume"]) == 0
    assert CHECKSUMS_KEY in torch.load(ckpt, map_location="cpu", weights_only=True)  # rewritten with checksums


def test_every_checkpoint_fit_writes_carries_checksums_that_verify(trained):
    for path in (trained / DEBUG_CKPTS).glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        tensors = checkpoint[CHECKSUMS_KEY]["tensors"]
        assert f"state_dict/{TENSOR}" in tensors and any(p.startswith("optimizer_states/") for p in tensors)
        assert verify_checksums(checkpoint) is True


def _small_checkpoint(path: Path) -> None:
    model = TransformerLM(ModelConfig(vocab_size=260, context_length=8, d_model=16, n_layers=1, n_heads=2))
    write_checkpoint(model, Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]), path)


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["llm_lit"]["model_config"].update(d_model=17), "its structure"),
    (lambda c: c["llm_lit"]["tokenizer"]["special_tokens"].append("<|x|>"), "its structure"),
    (lambda c: c["state_dict"].pop("model.ln_final.weight"), "its structure"),
    (lambda c: c["state_dict"]["model.ln_final.weight"].mul_(2), "the tensor 'state_dict/model.ln_final.weight'"),
], ids=["config value", "tokenizer", "tensor removed", "tensor scaled"])
def test_any_edit_after_saving_is_refused(tmp_path, edit, named):
    # write_checkpoint (what `llm_lit import` writes) records checksums too
    _small_checkpoint(tmp_path / "m.ckpt")
    assert read_checkpoint(tmp_path / "m.ckpt")["global_step"] == 0
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, tmp_path / "m.ckpt")
    with pytest.raises(UserError, match=rf"is corrupt: {named}"):
        read_checkpoint(tmp_path / "m.ckpt")


def test_the_checksum_is_of_the_elements_whatever_the_layout():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    assert tensor_crc(base.t()) == tensor_crc(base.t().contiguous())
    assert tensor_crc(base[1:3]) == tensor_crc(base[1:3].clone())
    assert tensor_crc(base.to(torch.bfloat16)) != tensor_crc(base)
    assert tensor_crc(torch.empty(0)) == 0
    # a value's type and a tensor's dtype and shape are part of the structure
    assert structure_text({"a": (1, 2.0, None, "x", torch.zeros(2, 3))}) == "{'a':(1,2.0,None,'x',T(torch.float32,(2, 3)))}"
    assert structure_text([1]) != structure_text((1,)) and structure_text(1) != structure_text(1.0)
