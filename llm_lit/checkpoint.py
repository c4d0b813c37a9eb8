"""Reading llm_lit checkpoints without executing code from them.

A checkpoint written by `llm_lit fit` is a Lightning checkpoint whose `state_dict` holds the
weights as `model.<TransformerLM key>` and whose `"llm_lit"` section holds the model config
and the tokenizer as plain data, so `load_checkpoint(path)` rebuilds both from the file
alone. Every load uses `torch.load(weights_only=True)`: tensors and plain containers only.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer

CHECKPOINT_KEY = "llm_lit"
CHECKPOINT_VERSION = 1
SUPPORTED_VERSIONS = (CHECKPOINT_VERSION,)


def read_checkpoint(path: str | os.PathLike, mmap: bool = True) -> dict[str, Any]:
    """The checkpoint at `path` as a dict, loaded with `weights_only=True` on the CPU (memory-mapped if `mmap`).

    Raises `UserError` when the file is missing, truncated, corrupt or holds arbitrary objects.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"The checkpoint '{path}' does not exist; pass the path of a .ckpt file written by llm_lit fit.")
    if path.stat().st_size == 0 or not zipfile.is_zipfile(path):
        raise UserError(f"The checkpoint '{path}' is truncated or corrupt (not a complete torch zip file); "
                        "use another checkpoint, e.g. last.ckpt or an earlier one.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UserError(f"The checkpoint '{path}' holds objects other than tensors and plain data, which are not "
                        "loaded for safety; pass a checkpoint written by llm_lit fit.") from e
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"The checkpoint '{path}' is truncated or corrupt ({str(e).splitlines()[0][:120]}); "
                        "use another checkpoint, e.g. last.ckpt or an earlier one.") from e
    if not isinstance(checkpoint, dict):
        raise UserError(f"The checkpoint '{path}' is not a Lightning checkpoint; pass a .ckpt file written by llm_lit fit.")
    return checkpoint


def checkpoint_payload(checkpoint: dict[str, Any], path: str | os.PathLike = "checkpoint") -> dict[str, Any]:
    """The `"llm_lit"` section of a loaded checkpoint (model config dict, tokenizer dict, version), checked."""
    payload = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(payload, dict) or "model_config" not in payload or "state_dict" not in checkpoint:
        raise UserError(f"The checkpoint '{path}' was not written by llm_lit (no model config inside); "
                        "pass a checkpoint saved by llm_lit fit.")
    if payload.get("version") not in SUPPORTED_VERSIONS:
        raise UserError(f"The checkpoint '{path}' has llm_lit format version {payload.get('version')!r}, which this "
                        f"version cannot read (it reads {SUPPORTED_VERSIONS}); upgrade llm_lit.")
    return payload


def model_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The `TransformerLM` weights of a Lightning checkpoint (the `model.` prefix removed)."""
    prefix = "model."
    return {k[len(prefix):].replace("_orig_mod.", ""): v for k, v in checkpoint["state_dict"].items()
            if k.startswith(prefix)}


def load_checkpoint(path: str | os.PathLike) -> tuple[TransformerLM, Tokenizer]:
    """Rebuild `(TransformerLM, Tokenizer)` from an llm_lit checkpoint alone (model on CPU, eval mode)."""
    checkpoint = read_checkpoint(path)
    payload = checkpoint_payload(checkpoint, path)
    if payload.get("tokenizer") is None:
        raise UserError(f"The checkpoint '{path}' carries no tokenizer; pass a checkpoint saved by llm_lit fit.")
    config = ModelConfig.from_dict(payload["model_config"])
    tokenizer = Tokenizer.from_dict(payload["tokenizer"])
    model = TransformerLM(config)
    try:
        model.load_state_dict(model_state_dict(checkpoint), strict=True)
    except RuntimeError as e:
        raise UserError(f"The checkpoint '{path}' holds weights of another architecture than its model config "
                        f"({str(e).splitlines()[0][:120]}); pass an unmodified checkpoint written by llm_lit fit.") from e
    return model.eval(), tokenizer
