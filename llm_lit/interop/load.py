"""Import a Hugging Face `LlamaForCausalLM` or `GPT2LMHeadModel` folder into our `TransformerLM`.

    model, tokenizer = load_hf("path/to/hf_model")

Everything is read from the local folder, nothing is downloaded: `config.json`, the weights
as `model.safetensors` (read by our own reader), `pytorch_model.bin` (read with
`torch.load(weights_only=True)`, so no code in it runs) or shards listed in
`model.safetensors.index.json` / `pytorch_model.bin.index.json`, and the tokenizer from
`tokenizer.json` or `vocab.json` + `merges.txt`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from llm_lit.errors import UserError
from llm_lit.interop import hf_gpt2, hf_llama
from llm_lit.interop.hf_tokenizer import load_hf_tokenizer
from llm_lit.interop.safetensors_io import load_file
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.model.checks import first_nonfinite
from tokenizer import BPETokenizer

_LAYOUTS = {"llama": hf_llama, "gpt2": hf_gpt2}
_ARCHITECTURES = {hf_llama.ARCHITECTURE: "llama", "LlamaModel": "llama", hf_gpt2.ARCHITECTURE: "gpt2", "GPT2Model": "gpt2"}


def load_hf(folder: str | os.PathLike, kernels: str = "torch") -> tuple[TransformerLM, BPETokenizer]:
    """`(TransformerLM, BPETokenizer)` from a local Hugging Face model folder (model in eval mode, float32, CPU).

    `kernels` picks our layers' kernels ('torch' or 'reference'); it does not change the weights.
    """
    model = load_hf_model(folder, kernels=kernels)
    tokenizer = load_hf_tokenizer(_folder(folder))
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(
            f"The tokenizer in {folder} has {tokenizer.vocab_size} ids but the model only {model.config.vocab_size}; "
            "put the tokenizer files that belong to this model in the folder."
        )
    return model, tokenizer


def load_hf_model(folder: str | os.PathLike, kernels: str = "torch") -> TransformerLM:
    """Our `TransformerLM` with the weights of a local Hugging Face Llama or GPT-2 folder."""
    folder = _folder(folder)
    hf = _read_json(folder / "config.json")
    layout = _layout(hf, folder / "config.json")
    config = _config(hf, layout, folder / "config.json", kernels)
    tensors = read_hf_weights(folder)
    nonfinite = first_nonfinite(sorted(tensors.items()))
    if nonfinite is not None:
        raise UserError(f"The weights in {folder} hold NaN or infinite values in '{nonfinite}', which no run can use; "
                        "re-download them or pass a folder of finite weights.")
    state_dict = _LAYOUTS[layout].from_hf_state_dict(tensors, config)
    with torch.device("meta"):  # the shapes config.json implies, before anything of that size is allocated
        expected = TransformerLM(config).state_dict()
    for name, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise UserError(
                f"The weights in {folder} give '{name}' shape {tuple(tensor.shape)} but its config.json implies "
                f"{tuple(expected[name].shape)}; pass the config.json saved with these weights."
            )
    model = TransformerLM(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def read_hf_config(folder: str | os.PathLike, kernels: str = "torch") -> ModelConfig:
    """Our `ModelConfig` for the `config.json` of a Hugging Face Llama or GPT-2 folder."""
    folder = _folder(folder)
    hf = _read_json(folder / "config.json")
    return _config(hf, _layout(hf, folder / "config.json"), folder / "config.json", kernels)


def read_hf_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face folder's weights (safetensors preferred, then PyTorch, sharded or not)."""
    folder = Path(folder)
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return _read_weight_file(folder / single)
        if (folder / index).is_file():
            return _read_shards(folder, folder / index)
    raise UserError(
        f"{folder} has no model.safetensors, pytorch_model.bin or sharded index of them; "
        "pass a folder saved with save_pretrained (and its weights downloaded)."
    )


def _read_shards(folder: Path, index_path: Path) -> dict[str, torch.Tensor]:
    index = _read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index_path} has no weight_map; pass the index file saved with the shards.")
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not _inside(shard):
            raise UserError(f"{index_path} names the shard {shard!r}, which is not a file inside {folder}; only shards "
                            "in the model folder itself are read, so pass the index file saved with the shards.")
        if not (folder / shard).is_file():
            raise UserError(f"{index_path} lists the shard {shard}, which is missing from {folder}; copy every shard into the folder.")
        tensors.update(_read_weight_file(folder / shard))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise UserError(f"{index_path} names '{missing[0]}' but no shard holds it; re-download the shards.")
    return tensors


def _inside(name: Any) -> bool:
    """Whether a shard name of an index file is a relative path that stays inside the folder (no `..`, not absolute)."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path} holds objects other than tensors, which are not loaded for safety; convert it to safetensors.") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path} is truncated or corrupt ({str(e).splitlines()[0][:120]}); re-download it.") from e
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise UserError(f"{path} is not a state dict of tensors; pass the pytorch_model.bin written by save_pretrained.")
    return tensors


def _layout(hf: Any, where: Path) -> str:
    if not isinstance(hf, dict):
        raise UserError(f"{where} is not a JSON object; pass the config.json of a Hugging Face model.")
    model_type = hf.get("model_type")
    if model_type in _LAYOUTS:
        return model_type
    for architecture in hf.get("architectures") or []:
        if architecture in _ARCHITECTURES:
            return _ARCHITECTURES[architecture]
    raise UserError(
        f"{where} describes a {model_type!r} model but llm_lit imports only Llama ('llama') and GPT-2 ('gpt2') models; "
        "pass a LlamaForCausalLM or GPT2LMHeadModel folder."
    )


#: config.json keys that hold a count (a positive whole number) in the Llama and GPT-2 layouts.
_COUNT_KEYS = ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
               "max_position_embeddings", "num_key_value_heads", "head_dim", "n_embd", "n_head", "n_layer",
               "n_positions", "n_inner", "n_ctx")
#: config.json keys that hold a real number.
_NUMBER_KEYS = ("rms_norm_eps", "layer_norm_epsilon", "rope_theta", "initializer_range", "attention_dropout",
                "resid_pdrop", "embd_pdrop", "attn_pdrop")


def _check_values(hf: dict, where: Path) -> None:
    """Refuse, naming the key, a count that is not a positive whole number or a number that is not one."""
    for key in _COUNT_KEYS:
        value = hf.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"{where} has {key}={value!r}, which is not a positive whole number; fix it or pass the "
                            "config.json saved with the model.")
    for key in _NUMBER_KEYS:
        value = hf.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise UserError(f"{where} has {key}={value!r}, which is not a number; fix it or pass the config.json "
                            "saved with the model.")


def _config(hf: dict, layout: str, where: Path, kernels: str) -> ModelConfig:
    _check_values(hf, where)
    try:
        config = _LAYOUTS[layout].from_hf_config(hf, str(where))
    except KeyError as e:
        raise UserError(f"{where} lacks the key {e.args[0]!r} a {layout} config needs; pass the complete config.json.") from None
    config.kernels = kernels
    return ModelConfig.from_dict(config.to_dict())  # re-validates the changed field


def _folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise UserError(f"The Hugging Face model folder {path} {what}; pass a local folder holding config.json and the weights (nothing is downloaded).")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; pass a folder saved with save_pretrained.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); re-save or re-download it.") from None


