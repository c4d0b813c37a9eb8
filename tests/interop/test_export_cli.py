"""`llm_lit export --ckpt_path X --output DIR` on a real Lightning checkpoint, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from interop_helpers import make_config

from llm_lit.commands.export import main as export_main
from llm_lit.training.module import LanguageModel
from llm_lit.run.checkpoint_io import AtomicCheckpointIO

ROOT = Path(__file__).resolve().parents[2]
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoint(tok, tmp_path_factory) -> tuple[Path, LanguageModel]:
    """A checkpoint written by Lightning's own `Trainer.save_checkpoint` of a `LanguageModel`, through the
    checkpoint IO `llm_lit fit` uses (so it carries checksums, and loading it prints no note)."""
    torch.manual_seed(0)
    module = LanguageModel(make_config("gpt2"))
    module.set_tokenizer(tok)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1, plugins=[AtomicCheckpointIO()])
    trainer.strategy.connect(module)
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def _llm_lit(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "llm_lit", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_export_is_loadable_by_transformers(checkpoint, tmp_path):
    path, module = checkpoint
    result = _llm_lit("export", "--ckpt_path", str(path), "--format", "hf", "--output", str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert "as GPT2LMHeadModel" in result.stdout
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, 400, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(module.model.eval()(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_cli_errors_are_one_line(checkpoint, tmp_path, capsys):
    from llm_lit.commands.cli import main

    path, _ = checkpoint
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep").write_text("")
    assert main(["export", "--ckpt_path", str(path), "--output", str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: The output folder {tmp_path / 'hf'} already exists and is not empty; "
        "pass overwrite=True (--overwrite true) or another folder."]
    assert main(["export", "--ckpt_path", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "does not exist; pass the path of a .ckpt file" in err
    assert main(["export", "--ckpt_path", str(path), "--output", str(tmp_path / "y"), "--overwrite", "true"]) == 0
    assert "as GPT2LMHeadModel" in capsys.readouterr().out


def test_bad_arguments_name_the_fix(tmp_path):
    from llm_lit.errors import UserError

    with pytest.raises(UserError, match=r"Invalid value for format: .*onnx.*; see llm_lit export --help"):
        export_main(["--ckpt_path", "x.ckpt", "--output", str(tmp_path), "--format", "onnx"])
    with pytest.raises(UserError, match=r"required: ckpt_path; see llm_lit export --help"):
        export_main(["--output", str(tmp_path)])



def test_load_pretrained_reads_checkpoints_and_hf_folders(checkpoint, tmp_path):
    from llm_lit.commands.export import export_checkpoint
    from llm_lit.run.init_from import load_pretrained

    path, module = checkpoint
    model, tok = load_pretrained(path, kernels="reference")
    assert model.config.kernels == "reference"
    assert tok.fingerprint() == module.tokenizer.fingerprint()
    folder = export_checkpoint(path, tmp_path / "hf")
    from_folder, _ = load_pretrained(folder, kernels="reference")
    for key, value in module.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value) and torch.equal(from_folder.state_dict()[key], value)
    from llm_lit.errors import UserError

    with pytest.raises(UserError, match=r"does not exist; pass a Hugging Face model folder or an llm_lit .ckpt file"):
        load_pretrained(tmp_path / "nothing")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_the_exported_folder_and_files_follow_the_umask(checkpoint, tmp_path, umask):
    path, _ = checkpoint
    previous = os.umask(umask)
    try:
        assert export_main(["--ckpt_path", str(path), "--output", str(tmp_path / "hf")]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "hf").stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir would make it
    for file in (tmp_path / "hf").iterdir():
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask, file.name  # as open() would make it
