"""llm_lit checkpoints: reading them without executing code, writing them, and applying one to a run.

A checkpoint written by `llm_lit fit` is a Lightning checkpoint whose `state_dict` holds the
weights as `model.<TransformerLM key>` and whose `"llm_lit"` section holds the model config
and the tokenizer as plain data, so `load_checkpoint(path)` rebuilds both from the file
alone. Every load uses `torch.load(weights_only=True)`: tensors and plain containers only.
Every save records a checksum of each tensor (`llm_lit.checksums`) and every load verifies them,
then refuses weights that hold NaN or infinity, each in one line naming the tensor.

`--ckpt_path FILE` is read once (`LoadedCheckpoint.read`, at parse time, memory-mapped): for
validate, test and predict its model config is applied to the parsed config through the
parser, so argument links are recomputed (`apply_to_config`), and its tokenizer goes to the
DataModule in memory; when Lightning then asks for the same, unchanged file, the checkpoint
IO hands over this copy instead of reading it again (`LoadedCheckpoint.take`).
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from llm_lit.checksums import ChecksumMismatch, verify_checksums, with_checksums
from llm_lit.errors import UserError
from llm_lit.guards import first_nonfinite, state_dict_mismatch
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer
from tokenizer.atomic import atomic_path

CHECKPOINT_KEY = "llm_lit"
CHECKPOINT_VERSION = 1
SUPPORTED_VERSIONS = (CHECKPOINT_VERSION,)
#: `--ckpt_path` values Lightning resolves itself (to a file it then reads through the checkpoint IO).
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")
#: Subcommands whose model config and tokenizer come from the checkpoint rather than the config files.
CHECKPOINT_DEFINES_MODEL = ("validate", "test", "predict")


def read_checkpoint(path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> dict[str, Any]:
    """The checkpoint at `path` as a dict, loaded with `weights_only=True` on the CPU (memory-mapped if `mmap`).

    Raises `UserError` when the file is missing, truncated, corrupt or holds arbitrary objects;
    with `verify` (always, but in the load-time benchmark) also when a tensor does not match the
    checksum recorded when it was saved, or the weights hold NaN or infinity.
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
    if verify:
        _verify(checkpoint, path)
    return checkpoint


def _verify(checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose contents differ from what was saved, or whose weights are not finite."""
    try:
        verified = verify_checksums(checkpoint)
    except ChecksumMismatch as e:
        raise UserError(f"The checkpoint '{path}' is corrupt: {e.what} differs from what was saved (checksum "
                        "mismatch); use another checkpoint, e.g. an earlier one or a fresh copy.") from None
    if verified is None and CHECKPOINT_KEY in checkpoint and rank_zero_only.rank == 0:
        print(f"note: the checkpoint '{path}' has no checksums (written by llm_lit before they were recorded), "
              "so it is loaded without verifying them.", file=sys.stderr, flush=True)
    weights = ((name, t) for name, t in checkpoint.get("state_dict", {}).items() if name.startswith("model."))
    name = first_nonfinite(weights)
    if name is not None:
        raise UserError(f"The checkpoint '{path}' holds NaN or infinite weights in '{name}', which no run can "
                        "use; use an earlier checkpoint.")


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `checkpoint` with its checksums to `path` atomically (a temporary name, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save(with_checksums(checkpoint), tmp)


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
    weights = model_state_dict(checkpoint)
    problem = state_dict_mismatch(model.state_dict(), weights)
    if problem:
        raise UserError(f"The checkpoint '{path}' holds weights of another architecture than its model config ({problem}); "
                        "pass an unmodified checkpoint written by llm_lit fit.")
    model.load_state_dict(weights, strict=True)
    return model.eval(), tokenizer


def llm_lit_section(config: ModelConfig, tokenizer: Optional[Tokenizer], skipped_steps: int = 0) -> dict[str, Any]:
    """The `"llm_lit"` section of a checkpoint: format version, model config and tokenizer as plain data."""
    return {
        "version": CHECKPOINT_VERSION,
        "model_config": config.to_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "skipped_steps": skipped_steps,
    }


def write_checkpoint(model: TransformerLM, tokenizer: Optional[Tokenizer], path: str | os.PathLike) -> None:
    """Write `model` and `tokenizer` as an llm_lit checkpoint at step 0 with no optimizer state, atomically.

    It is what `Trainer.save_checkpoint` writes for a fresh `LanguageModel`, less the loop and
    callback states of a run that never started: `validate`/`predict --ckpt_path` use it as it
    is, and `fit --ckpt_path` starts training from its weights with a fresh optimizer and schedule.
    """
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [],
        "lr_schedulers": [],
        CHECKPOINT_KEY: llm_lit_section(model.config, tokenizer),
    }
    save_checkpoint_file(checkpoint, path)


def same_tokenizer(tokenizer: Tokenizer, saved: dict[str, Any]) -> bool:
    """Whether the tokenizer dict of a checkpoint is `tokenizer`: equal dicts (cheap), else equal
    fingerprints (the same tokenizer written in another version of the format)."""
    return tokenizer.to_dict() == saved or tokenizer.fingerprint() == Tokenizer.from_dict(saved).fingerprint()


# ---------------------------------------------------------------------- a checkpoint read once
def _file_stamp(path: str | os.PathLike) -> Optional[tuple]:
    """What identifies the file's current contents: its real path, device, inode, size and mtime (None if missing)."""
    real = os.path.realpath(Path(path).expanduser())
    try:
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class LoadedCheckpoint:
    """A checkpoint file read once (memory-mapped), with what identifies the contents that were read."""

    path: Path
    stamp: Optional[tuple]
    contents: Optional[dict[str, Any]] = field(repr=False)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "LoadedCheckpoint":
        """Read and check the llm_lit checkpoint at `path` (`UserError` in one line if it is not one)."""
        stamp = _file_stamp(path)
        contents = read_checkpoint(path, mmap=True)
        checkpoint_payload(contents, path)
        return cls(Path(path), stamp, contents)

    @property
    def payload(self) -> dict[str, Any]:
        """The checkpoint's `"llm_lit"` section."""
        return self.contents[CHECKPOINT_KEY]

    def model_config(self) -> ModelConfig:
        """The architecture the checkpoint was written with."""
        return ModelConfig.from_dict(self.payload["model_config"])

    def tokenizer(self) -> Optional[Tokenizer]:
        """The tokenizer the checkpoint carries (None for a checkpoint without one)."""
        saved = self.payload.get("tokenizer")
        return Tokenizer.from_dict(saved) if saved is not None else None

    def take(self, path: str | os.PathLike) -> Optional[dict[str, Any]]:
        """The contents, once, if `path` is this same, unchanged file (else None: read it anew).

        The tensors are copied out of the memory map, so nothing that lives on (optimizer
        state, callback scores) keeps the file mapped after it is replaced by a newer checkpoint.
        """
        if self.contents is None or self.stamp is None or _file_stamp(path) != self.stamp:
            return None
        contents, self.contents = self.contents, None
        return _copied(contents)


def _copied(value: Any) -> Any:
    """`value` with every tensor inside dicts, lists and tuples replaced by an in-memory copy."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(v) for v in value)
    return value


def read_given_checkpoint(ckpt_path: Optional[str]) -> Optional[LoadedCheckpoint]:
    """The checkpoint a `--ckpt_path` names, read once; None when there is none or Lightning resolves
    the name itself ('last', 'best', ...), in which case Lightning reads it through the checkpoint IO."""
    if not ckpt_path or ckpt_path in LIGHTNING_CKPT_NAMES:
        return None
    return LoadedCheckpoint.read(ckpt_path)


def checkpoint_settings(checkpoint: LoadedCheckpoint) -> dict[str, Any]:
    """The settings a checkpoint imposes on validate, test and predict: its architecture and vocabulary.

    When the checkpoint carries a tokenizer, `data.tokenizer_path` is cleared: that tokenizer goes to the
    DataModule in memory (`TextDataModule.use_tokenizer`). `data.context_length` follows through the
    parse-time link.
    """
    model_config = checkpoint.model_config().to_dict()
    data: dict[str, Any] = {"vocab_size": model_config["vocab_size"]}
    if checkpoint.payload.get("tokenizer") is not None:
        data["tokenizer_path"] = None
    return {"model": {"config": model_config}, "data": data}


def apply_to_config(parser: Any, config: Any, subcommand: str, checkpoint: LoadedCheckpoint) -> Any:
    """`config` (parsed by `parser`) with `checkpoint_settings` applied on top, through the parser,
    so its argument links are recomputed (as LightningCLI applies a checkpoint's hyperparameters)."""
    return parser.parse_object({subcommand: checkpoint_settings(checkpoint)}, config)
