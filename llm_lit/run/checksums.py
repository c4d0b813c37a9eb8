"""Checksums of a checkpoint's contents, recorded when it is saved and verified on every load.

A checkpoint is a nested dict of tensors and plain data. `with_checksums` adds, under
`CHECKSUMS_KEY`, a CRC-32 of every tensor's bytes, named by its path in the dict
(`state_dict/model.blocks.0.attn.q_proj.weight`, `optimizer_states/0/state/3/exp_avg`), and
one CRC-32 of everything else: the nesting, every key and plain value, and each tensor's
dtype and shape. `verify_checksums` recomputes them from what was loaded, so a flipped bit
in a tensor is refused naming that tensor, and a change anywhere else (a config value, the
tokenizer, a tensor added or removed) is refused too.

CRC-32 (zlib, about 3 GB/s on one core) detects corruption (a bad disk, a truncated copy, a
bit flipped in transfer); it is not a signature: whoever can edit the file can recompute it.
Checkpoints written before checksums were recorded have none and load unverified.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Iterator, Optional

import torch

#: The top-level checkpoint key holding `{"algorithm": "crc32", "tensors": {path: crc}, "structure": crc}`.
CHECKSUMS_KEY = "llm_lit_checksums"
ALGORITHM = "crc32"


class ChecksumMismatch(Exception):
    """What was loaded differs from what was saved; `what` names the tensor (or says 'the structure')."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def tensor_crc(tensor: torch.Tensor) -> int:
    """CRC-32 of the bytes of `tensor`'s elements in row-major order (its storage layout does not matter)."""
    flat = tensor.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if flat.numel() == 0:
        return 0
    return zlib.crc32(memoryview(flat.contiguous().view(torch.uint8).numpy()))


def tensors_with_paths(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, with its '/'-joined path of keys and indices."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from tensors_with_paths(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from tensors_with_paths(item, f"{path}/{i}" if path else str(i))


def structure_text(value: Any) -> str:
    """A canonical text of everything in `value` but the tensors' contents (those stand as dtype and shape).

    Only the types a `weights_only` load can return are spelled out; anything else is written as
    its type name, so an object whose `repr` holds a memory address never makes a false mismatch.
    """
    if isinstance(value, torch.Tensor):
        return f"T({value.dtype},{tuple(value.shape)})"
    if isinstance(value, dict):
        return "{" + ",".join(f"{structure_text(k)}:{structure_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        return open_ + ",".join(structure_text(v) for v in value) + close
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(structure_text(v) for v in value)) + "}"
    if value is None or isinstance(value, (bool, str, bytes)):
        return repr(value)
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return type(value).__name__


def checksums(checkpoint: dict[str, Any], crc: Callable[[torch.Tensor], int] = tensor_crc) -> dict[str, Any]:
    """The checksum record of `checkpoint` (its own `CHECKSUMS_KEY` entry left out)."""
    contents = {k: v for k, v in checkpoint.items() if k != CHECKSUMS_KEY}
    return {
        "algorithm": ALGORITHM,
        "tensors": {path: crc(tensor) for path, tensor in tensors_with_paths(contents)},
        "structure": zlib.crc32(structure_text(contents).encode()),
    }


def with_checksums(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of `checkpoint` with its checksum record added (to be saved as it is)."""
    return {**checkpoint, CHECKSUMS_KEY: checksums(checkpoint)}


def verify_checksums(checkpoint: dict[str, Any]) -> Optional[bool]:
    """Check a loaded checkpoint against its checksum record and remove the record.

    Returns True when it matches, None when the checkpoint has no record (written before they
    were kept); raises `ChecksumMismatch` naming the first tensor (in saved order) that differs.
    """
    record = checkpoint.pop(CHECKSUMS_KEY, None)
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
        raise ChecksumMismatch("its checksum record")
    saved = record.get("tensors", {})
    for path, tensor in tensors_with_paths(checkpoint):
        if path in saved and tensor_crc(tensor) != saved[path]:
            raise ChecksumMismatch(f"the tensor '{path}'")
    if zlib.crc32(structure_text(checkpoint).encode()) != record.get("structure"):
        raise ChecksumMismatch("its structure (a setting, the tokenizer, or which tensors it holds)")
    return True
