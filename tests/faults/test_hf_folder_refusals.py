"""A Hugging Face folder that is damaged or hostile is refused in one line naming what is wrong, before
anything of the size it claims is allocated and without reading a file outside the folder; `llm_lit import`
never writes a checkpoint of weights that no run can use, and a full disk is one line too."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import cli_env
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.interop import export_hf
from llm_lit.interop.safetensors_io import load_file, save_file
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer, train_bpe

TINY = dict(vocab_size=300, context_length=32, d_model=32, n_layers=1, n_heads=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A small Llama and GPT-2 folder written by our export (random weights, a 300-id tokenizer)."""
    root = tmp_path_factory.mktemp("hf")
    (root / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    vocab, merges = train_bpe(root / "c.txt", 300, ["<|endoftext|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
    out = {}
    for name in ("llama", "gpt2"):
        torch.manual_seed(0)
        model = TransformerLM(getattr(ModelConfig, name)(**TINY))
        out[name] = export_hf(model, tok, root / name)
    return out


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def _edit_config(folder: Path, **values) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(values)
    (folder / "config.json").write_text(json.dumps(config))


def _import_error(capsys, folder: Path, output: Path) -> str:
    assert main(["import", "--hf_dir", str(folder), "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert not output.exists()
    return err


@pytest.mark.parametrize("layout, key, value", [("llama", "num_attention_heads", "two"),
                                                ("gpt2", "n_embd", 32.5),
                                                ("llama", "rms_norm_eps", "tiny"),
                                                ("llama", "num_hidden_layers", True)],
                         ids=["heads-as-text", "width-not-whole", "eps-as-text", "layers-as-bool"])
def test_a_config_value_of_the_wrong_type_is_one_line_naming_the_key(folders, tmp_path, capsys, layout, key, value):
    folder = _copy(folders[layout], tmp_path / "hf")
    _edit_config(folder, **{key: value})
    err = _import_error(capsys, folder, tmp_path / "out")
    assert f"has {key}={value!r}, which is not a" in err


@pytest.mark.parametrize("layout", ["llama", "gpt2"])
def test_a_huge_vocab_size_is_refused_by_the_weights_shapes_before_allocating(folders, tmp_path, capsys, layout):
    folder = _copy(folders[layout], tmp_path / "hf")
    _edit_config(folder, vocab_size=10**12)  # (10^12, 32) floats: 128 TB
    err = _import_error(capsys, folder, tmp_path / "out")
    assert "give 'token_embeddings.weight' shape (300, 32) but its config.json implies (1000000000000, 32)" in err


@pytest.mark.parametrize("shard", ["../outside/x.safetensors", "/etc/x.safetensors", "a/../../x.safetensors"])
def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(folders, tmp_path, capsys, shard):
    folder = _copy(folders["llama"], tmp_path / "hf")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    names = list(load_file(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))
    err = _import_error(capsys, folder, tmp_path / "out")
    assert f"names the shard '{shard}', which is not a file inside" in err


def test_an_import_of_weights_holding_nan_is_refused_naming_the_tensor(folders, tmp_path, capsys):
    folder = _copy(folders["llama"], tmp_path / "hf")
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.0.mlp.up_proj.weight"][3, 5] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    err = _import_error(capsys, folder, tmp_path / "out")
    assert "hold NaN or infinite values in 'model.layers.0.mlp.up_proj.weight'" in err


def test_write_checkpoint_refuses_non_finite_weights(tmp_path):
    from llm_lit.errors import UserError
    from llm_lit.run.checkpoint import write_checkpoint

    model = TransformerLM(ModelConfig(**TINY))
    with torch.no_grad():
        model.ln_final.weight[0] = float("inf")
    with pytest.raises(UserError, match=r"hold NaN or infinite values in 'ln_final.weight', so nothing was written"):
        write_checkpoint(model, None, tmp_path / "model.ckpt")
    assert not list(tmp_path.iterdir())


def test_an_import_onto_a_full_disk_is_one_line_and_leaves_nothing(folders, tmp_path):
    """A real failed write: a file-size limit (as a full disk, torch's zip writer raises a RuntimeError)."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "llm_lit", "import", "--hf_dir", str(folders["llama"]),
                             "--output", str(out)], env=cli_env(), capture_output=True, text=True, timeout=300,
                            preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: Cannot write the imported model folder '{out}' (File too large)"), line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
