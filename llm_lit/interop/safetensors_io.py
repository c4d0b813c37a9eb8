"""A small reader and writer of the safetensors format, byte-compatible with the `safetensors` package.

The format: an 8-byte little-endian header length `n`, then `n` bytes of JSON, then one flat
data buffer. The JSON maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}`
(offsets into the buffer) and may hold an `"__metadata__"` object of string -> string.

To produce the same bytes as the `safetensors` package we follow its conventions: tensors are
laid out by dtype (the dtype with the largest rank in `DTYPE_ORDER` first), then by name;
`__metadata__` comes first in the header; the JSON is compact; and the header is padded with
spaces so the data starts at a multiple of 8 bytes. Data is little-endian, row-major.
(With two or more metadata keys the package's output is itself not reproducible: it writes
them in hash order. We keep the caller's order; the parsed header and the data still match.)
Unlike the package, non-contiguous tensors are accepted and written as their contiguous copy.

No code runs when reading (unlike pickle), which is why Hugging Face prefers this format.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Mapping

import torch

from llm_lit.errors import UserError
from tokenizer.atomic import atomic_path

#: safetensors dtype name <-> torch dtype (the ones torch has).
DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32,
    "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "F8_E5M2": torch.float8_e5m2, "F8_E4M3": torch.float8_e4m3fn,
}
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        DTYPES[_name] = getattr(torch, _attr)
_NAMES = {dtype: name for name, dtype in DTYPES.items()}

#: The order of the safetensors package's dtype enum; its writer lays tensors out from the last one back.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
               "F64", "I64", "U64"]

_MAX_HEADER = 100 * 1024 * 1024  # the safetensors package refuses larger headers too


class SafetensorsError(UserError, ValueError):
    """A safetensors file that cannot be written or read; the message names the file and the fix."""


# ---------------------------------------------------------------------------------------- write


def serialize(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding `tensors` (any shapes) and optional string `metadata`."""
    header, order = _header(tensors, metadata)
    return header + b"".join(_tensor_bytes(tensors[name]) for name in order)


def save_file(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
              metadata: Mapping[str, str] | None = None) -> None:
    """Write `tensors` to `path` as safetensors, atomically, one tensor at a time (no full copy in memory)."""
    header, order = _header(tensors, metadata)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(header)
            for name in order:
                f.write(_tensor_view(tensors[name]))
    except OSError as e:
        raise SafetensorsError(f"Cannot write safetensors file {path} ({e.strerror or e}); choose a writable folder.") from None


def _header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> tuple[bytes, list[str]]:
    """The length prefix + padded JSON header, and the names in the order their data is laid out."""
    if sys.byteorder != "little":
        raise SafetensorsError("This machine is big-endian but safetensors stores little-endian data; export on a little-endian machine.")
    _check_tensors(tensors)
    rank = {name: i for i, name in enumerate(DTYPE_ORDER)}
    order = sorted(tensors, key=lambda name: (-rank[_NAMES[tensors[name].dtype]], name))
    entries: dict[str, object] = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("safetensors metadata must map strings to strings; convert the values with str().")
        entries["__metadata__"] = dict(metadata)
    offset = 0
    for name in order:
        t = tensors[name]
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, order


def _check_tensors(tensors: Mapping[str, torch.Tensor]) -> None:
    storages: dict[tuple[int, int], str] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(f"Tensor name {name!r} cannot be stored in safetensors; use a string other than '__metadata__'.")
        if not isinstance(t, torch.Tensor):
            raise SafetensorsError(f"'{name}' is a {type(t).__name__}, not a tensor; pass a dict of name -> torch.Tensor.")
        if t.dtype not in _NAMES:
            raise SafetensorsError(f"'{name}' has dtype {t.dtype}, which safetensors cannot store; convert it, e.g. with .float().")
        if t.layout != torch.strided:
            raise SafetensorsError(f"'{name}' is a {t.layout} tensor; convert it with .to_dense() before saving.")
        if t.numel() == 0:
            continue
        key = (t.untyped_storage().data_ptr(), t.device.index or 0)
        if key in storages:
            raise SafetensorsError(
                f"'{name}' shares memory with '{storages[key]}' (e.g. tied weights); save only one of them or .clone() it."
            )
        storages[key] = name


def _tensor_view(t: torch.Tensor) -> memoryview:
    """Row-major little-endian bytes of `t`, without a copy when `t` is a contiguous CPU tensor."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy())


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return _tensor_view(t).tobytes()


# ---------------------------------------------------------------------------------------- read


def deserialize(data: bytes) -> dict[str, torch.Tensor]:
    """Tensors of the safetensors file whose bytes are `data` (each a fresh, writable CPU tensor)."""
    header, start = _parse_header(data[:8], lambda n: data[8:8 + n], len(data), "the safetensors data")
    header.pop("__metadata__", None)
    return {name: _to_tensor(bytearray(data[start + b:start + e]), info) for name, (info, b, e) in header.items()}


def load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of the safetensors file at `path`, on the CPU, in the file's layout order."""
    return read_file(path)[0]


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` strings of the safetensors file at `path` ({} when it has none)."""
    return read_file(path, tensors=False)[1]


def read_file(path: str | os.PathLike, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """`(tensors, metadata)` of the safetensors file at `path`; SafetensorsError when it is missing or damaged."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header, start = _parse_header(f.read(8), f.read, size, f"safetensors file {path}")
            metadata = header.pop("__metadata__", {})
            out: dict[str, torch.Tensor] = {}
            for name, (info, begin, end) in (header.items() if tensors else ()):
                f.seek(start + begin)
                out[name] = _to_tensor(bytearray(f.read(end - begin)), info)
    except FileNotFoundError:
        raise SafetensorsError(f"The safetensors file {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise SafetensorsError(f"{path} is a folder, not a safetensors file; pass the path of the .safetensors file.") from None
    return out, metadata


def _parse_header(prefix: bytes, read, total: int, where: str) -> tuple[dict, int]:
    """Parse and check the header: `({name: (info, begin, end)}, data_start)`; `__metadata__` kept as a dict."""
    damaged = f"{where} is truncated or not safetensors"
    if len(prefix) < 8:
        raise SafetensorsError(f"{damaged} (shorter than 8 bytes); re-export or re-download it.")
    (n,) = struct.unpack("<Q", prefix)
    if n > _MAX_HEADER or 8 + n > total:
        raise SafetensorsError(f"{damaged} (header length {n} does not fit in {total} bytes); re-export or re-download it.")
    try:
        raw = json.loads(read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{damaged} (its header is not JSON: {e}); re-export or re-download it.") from None
    if not isinstance(raw, dict):
        raise SafetensorsError(f"{damaged} (its header is not a JSON object); re-export or re-download it.")
    start = 8 + n
    header: dict = {}
    spans = []
    for name, info in raw.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise SafetensorsError(f"{where} has __metadata__ that is not string -> string; re-export it.")
            header[name] = info
            continue
        begin, end = _check_entry(name, info, where)
        if start + end > total:
            raise SafetensorsError(f"{damaged} (tensor '{name}' ends past the end of the file); re-export or re-download it.")
        header[name] = (info, begin, end)
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise SafetensorsError(f"{where} has overlapping or gapped tensor data (at byte {begin}); re-export it.")
        position = end
    return header, start


def _check_entry(name: str, info: object, where: str) -> tuple[int, int]:
    ok = isinstance(info, dict) and isinstance(info.get("shape"), list) and isinstance(info.get("data_offsets"), list)
    if not ok or len(info["data_offsets"]) != 2 or not all(isinstance(d, int) and d >= 0 for d in info["shape"]):
        raise SafetensorsError(f"{where} has a malformed entry for '{name}'; re-export it.")
    if info.get("dtype") not in DTYPES:
        raise SafetensorsError(f"{where} stores '{name}' as {info.get('dtype')!r}, which torch cannot hold; convert the file to a common dtype.")
    begin, end = info["data_offsets"]
    count = 1
    for d in info["shape"]:
        count *= d
    expected = count * DTYPES[info["dtype"]].itemsize
    if not (isinstance(begin, int) and isinstance(end, int)) or end - begin != expected:
        raise SafetensorsError(
            f"{where} gives '{name}' {end - begin if isinstance(end, int) and isinstance(begin, int) else '?'} bytes "
            f"but its shape and dtype need {expected}; re-export it."
        )
    return begin, end


def _to_tensor(buffer: bytearray, info: dict) -> torch.Tensor:
    dtype = DTYPES[info["dtype"]]
    if not buffer:
        return torch.empty(info["shape"], dtype=dtype)
    return torch.frombuffer(buffer, dtype=torch.uint8).view(dtype).reshape(info["shape"])
