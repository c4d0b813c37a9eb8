"""Loading a trained model to generate from: what `chat` and `serve` accept.

    model, tokenizer = load_for_generation("runs/shakespeare/version_0/checkpoints/last.ckpt", device="auto")

The source is an llm_lit checkpoint (`.ckpt` written by fit), a folder written by
`llm_lit import` (its `model.ckpt`) or a local Hugging Face model folder (`config.json`,
weights, tokenizer files); the model comes back in eval mode on the chosen device.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from llm_lit.errors import UserError
from llm_lit.model import TransformerLM
from llm_lit.run.folders import newest_last_checkpoint
from llm_lit.run.init_from import load_pretrained
from tokenizer import AnyTokenizer


def resolve_device(device: str) -> torch.device:
    """The device `device` names: 'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N' (`UserError` otherwise)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise UserError(f"--device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {device!r}); pass one of those.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but no CUDA device is available; pass --device cpu.")
    return torch.device(device)


def model_source(ckpt_path: str) -> Path:
    """The file or folder to load for `ckpt_path`: for `last`, the newest `last.ckpt` under `runs/`; an import
    folder's `model.ckpt`; else the path itself."""
    if ckpt_path == "last" and not Path(ckpt_path).exists():
        return newest_last_checkpoint()
    path = Path(ckpt_path).expanduser()
    if path.is_dir() and not (path / "config.json").is_file() and (path / "model.ckpt").is_file():
        return path / "model.ckpt"  # a folder written by `llm_lit import`
    return path


def load_for_generation(ckpt_path: str, device: str = "auto") -> tuple[TransformerLM, AnyTokenizer]:
    """The model (eval mode, on `device`) and tokenizer of an llm_lit checkpoint, a folder written by
    `llm_lit import` (its model.ckpt) or a Hugging Face folder."""
    target = resolve_device(device)
    model, tokenizer = load_pretrained(model_source(ckpt_path))
    return model.to(target).eval(), tokenizer
