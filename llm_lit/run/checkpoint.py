"""llm_lit checkpoints: reading them without executing code, writing them, and applying one to a run.

A checkpoint written by `llm_lit fit` is a Lightning checkpoint whose `state_dict` holds the
weights as `model.<TransformerLM key>` and whose `"llm_lit"` section holds the model config
and the tokenizer as plain data, so `load_checkpoint(path)` rebuilds both from the file
alone. Every load uses `torch.load(weights_only=True)`: tensors and plain containers only.
Every save records a checksum of each tensor (`llm_lit.run.checksums`) and every load verifies them,
then refuses weights that hold NaN or infinity, each in one line naming the tensor.

`--ckpt_path FILE` is read once (`LoadedCheckpoint.read`, at parse time, memory-mapped): for
validate, test and predict its model config is applied to the parsed config through the
parser, so argument links are recomputed (`apply_to_config`), and its tokenizer goes to the
DataModule in memory; when Lightning then asks for the same, unchanged file, the checkpoint
IO hands over this copy instead of reading it again (`LoadedCheckpoint.take`).
"""

from __future__ import annotations

import errno
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM, build_model
from llm_lit.model.checks import first_nonfinite, state_dict_mismatch
from llm_lit.run.checksums import ChecksumMismatch, verify_checksums, with_checksums
from llm_lit.training.checkpoint_section import CHECKPOINT_KEY, SUPPORTED_VERSIONS, llm_lit_section
from tokenizer import AnyTokenizer, tokenizer_from_dict
from tokenizer.atomic import atomic_path

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
    name = first_nonfinite(named_tensors(checkpoint.get("optimizer_states", []), "optimizer_states"))
    if name is not None:
        raise UserError(f"The checkpoint '{path}' holds NaN or infinite optimizer state in '{name}', with which a "
                        "resumed run would fail at its first step; use an earlier checkpoint.")


def named_tensors(value: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, named by its path (`prefix/0/state/3/exp_avg`)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from named_tensors(item, f"{prefix}/{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from named_tensors(item, f"{prefix}/{index}")


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `checkpoint` with its checksums to `path` atomically (a temporary name, fsync, rename).

    A failed write (full disk, no permission, a file-size limit) raises `OSError`, whatever layer
    reported it: torch's zip writer reports a failed write as a `RuntimeError` naming no reason, turned
    here into the `OSError` behind it (`write_failure`). The previous file at `path` is left as it was.
    """
    with atomic_path(path) as tmp:
        try:
            torch.save(with_checksums(checkpoint), tmp)
        except RuntimeError as e:
            failure = write_failure(e, Path(tmp))
            if failure is None:
                raise
            raise failure from e


#: What torch's zip writer says when a write of its file failed (it names no errno).
_TORCH_WRITE_FAILURES = ("PytorchStreamWriter", "inline_container", "file write failed")


def write_failure(error: RuntimeError, written: Path) -> Optional[OSError]:
    """The `OSError` behind a `RuntimeError` of `torch.save` into the file `written` that reports a failed write,
    or None when the error is about something else.

    torch's message names no reason, so one more byte is appended to the file by Python, which meets
    the same full disk or size limit and says which (ENOSPC, EFBIG, EDQUOT, ...); if that byte goes
    through, a disk with less than `FULL_DISK_BYTES` free is taken as full, else torch's message is the reason.
    """
    message = str(error)
    if not any(marker in message for marker in _TORCH_WRITE_FAILURES):
        return None
    try:
        with open(written, "ab") as f:
            f.write(b"\0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno:
            return OSError(e.errno, e.strerror or os.strerror(e.errno))
    try:  # a full disk may still take one byte into a block it had begun
        usage = os.statvfs(written.parent)
        if usage.f_bavail * usage.f_frsize < FULL_DISK_BYTES:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        pass
    return OSError(errno.EIO, f"the write failed: {message.splitlines()[0][:120]}")


#: Free space under which a failed write is put down to a full disk.
FULL_DISK_BYTES = 16 << 20


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


def load_checkpoint(path: str | os.PathLike) -> tuple[TransformerLM, AnyTokenizer]:
    """Rebuild `(TransformerLM, tokenizer)` (BPE or char) from an llm_lit checkpoint alone (model on CPU, eval mode)."""
    checkpoint = read_checkpoint(path)
    payload = checkpoint_payload(checkpoint, path)
    if payload.get("tokenizer") is None:
        raise UserError(f"The checkpoint '{path}' carries no tokenizer; pass a checkpoint saved by llm_lit fit.")
    config = ModelConfig.from_dict(payload["model_config"])
    tokenizer = tokenizer_from_dict(payload["tokenizer"])
    model = build_model(config)
    weights = model_state_dict(checkpoint)
    problem = state_dict_mismatch(model.state_dict(), weights)
    if problem:
        raise UserError(f"The checkpoint '{path}' holds weights of another architecture than its model config ({problem}); "
                        "pass an unmodified checkpoint written by llm_lit fit.")
    model.load_state_dict(weights, strict=True)
    return model.eval(), tokenizer


def write_checkpoint(model: TransformerLM, tokenizer: Optional[AnyTokenizer], path: str | os.PathLike) -> None:
    """Write `model` and `tokenizer` as an llm_lit checkpoint at step 0 with no optimizer state, atomically.

    It is what `Trainer.save_checkpoint` writes for a fresh `LanguageModel`, less the loop and
    callback states of a run that never started: `validate`/`predict --ckpt_path` use it as it
    is, and `fit --ckpt_path` starts training from its weights with a fresh optimizer and schedule.
    """
    name = first_nonfinite(model.state_dict().items())
    if name is not None:
        raise UserError(f"The weights to write to '{path}' hold NaN or infinite values in '{name}', so nothing was "
                        "written; pass finite weights.")
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

    def tokenizer(self) -> Optional[AnyTokenizer]:
        """The tokenizer the checkpoint carries (None for a checkpoint without one)."""
        saved = self.payload.get("tokenizer")
        return tokenizer_from_dict(saved) if saved is not None else None

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


def require_weights(subcommand: Optional[str], ckpt_path: Optional[str], init_from: Optional[object]) -> None:
    """Refuse `validate` / `test` with neither `--ckpt_path` nor `--model.init_from`: they would score freshly
    initialised weights, a number that looks like a result and means nothing (`predict` refuses the same way)."""
    if subcommand in ("validate", "test") and not ckpt_path and not init_from:
        raise UserError(f"{subcommand} scores trained weights, and none were given (it would score an untrained model); "
                        "pass --ckpt_path last (the newest last.ckpt of the run) or --ckpt_path FILE, or "
                        "--model.init_from SOURCE to score those weights.")


def checkpoint_settings(checkpoint: LoadedCheckpoint) -> dict[str, Any]:
    """The settings a checkpoint imposes on validate, test and predict: its architecture and vocabulary.

    When the checkpoint carries a tokenizer, `data.tokenizer_path` is cleared (`CARRIED_TOKENIZER`): that tokenizer goes to the
    DataModule in memory (`TextDataModule.use_tokenizer`). `data.context_length` follows through the
    parse-time link.
    """
    model_config = checkpoint.model_config().to_dict()
    data: dict[str, Any] = {"vocab_size": model_config["vocab_size"]}
    if checkpoint.payload.get("tokenizer") is not None:
        data.update(CARRIED_TOKENIZER)
    return {"model": {"config": model_config}, "data": data}


#: The data settings of a run whose tokenizer is carried in (a checkpoint's, of either kind, handed to the
#: DataModule in memory): no file, and no char alphabet of its own (kind 'bpe' builds nothing at instantiation).
CARRIED_TOKENIZER = {"tokenizer_path": None, "tokenizer_kind": "bpe", "unk_token": None}


def apply_to_config(parser: Any, config: Any, subcommand: str, checkpoint: LoadedCheckpoint) -> Any:
    """`config` (parsed by `parser`) with `checkpoint_settings` applied on top, through the parser,
    so its argument links are recomputed (as LightningCLI applies a checkpoint's hyperparameters)."""
    return parser.parse_object({subcommand: checkpoint_settings(checkpoint)}, config)
