"""Token files: ours (`python -m tokenizer encode`: a `.bin` and its `.bin.json` sidecar) and other
tools' raw arrays of ids, used in place without re-encoding.

* llm.c's `.bin`: a header of 256 int32 (magic 20240520 for uint16 ids, 20240801 for uint32; the
  token count third), then the ids;
* a headerless array of ids, as nanoGPT's `prepare.py` writes (uint16): read with an explicit
  `data.token_dtype`.

A foreign file carries no record of the tokenizer that wrote it, so its ids are checked against
the vocabulary once, when the cache records it (`max_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from llm_lit.errors import UserError
from tokenizer.errors import TokenizerError
from tokenizer.token_file import read_sidecar

LLMC_MAGIC = {20240520: "uint16", 20240801: "uint32"}
LLMC_HEADER_BYTES = 256 * 4
TOKEN_DTYPES = ("uint16", "uint32")
_SCAN = 1 << 24  # ids per read when scanning for the largest


@dataclass(frozen=True)
class TokenLayout:
    """How a token file holds its ids: `num_tokens` of `dtype` from byte `offset`; `origin` is "llm_lit"
    (with its `sidecar`), "llm.c" or "headerless"."""

    origin: str
    dtype: str
    offset: int
    num_tokens: int
    sidecar: Optional[dict[str, Any]] = None


def token_layout(path: Path, size: int, what: str, token_dtype: Optional[str]) -> TokenLayout:
    """The layout of the token file `path` (`size` bytes); `UserError` naming the fix when it has none that
    can be read."""
    if Path(f"{path}.json").exists():
        return _ours(path, size, what)
    with open(path, "rb") as f:
        head = np.frombuffer(f.read(12).ljust(12, b"\0"), dtype="<i4")
    magic = int(head[0])
    if magic in LLMC_MAGIC:
        dtype = LLMC_MAGIC[magic]
        num_tokens = int(head[2])
        if size != LLMC_HEADER_BYTES + num_tokens * np.dtype(dtype).itemsize or num_tokens <= 0:
            raise UserError(f"The {what} file '{path}' has an llm.c header promising {num_tokens} {dtype} ids but "
                            f"{size} bytes; write it again with llm.c's data scripts.")
        return TokenLayout("llm.c", dtype, LLMC_HEADER_BYTES, num_tokens)
    if token_dtype is None:
        raise UserError(f"The {what} file '{path}' has no sidecar ({path}.json) and no llm.c header; if it is a "
                        "headerless array of token ids (nanoGPT's prepare.py writes uint16), pass --data.token_dtype "
                        "uint16 (or uint32), else re-create it with `python -m tokenizer encode`.")
    itemsize = np.dtype(token_dtype).itemsize
    if size % itemsize:
        raise UserError(f"The {what} file '{path}' has {size} bytes, not a whole number of {token_dtype} ids; check "
                        "--data.token_dtype.")
    return TokenLayout("headerless", token_dtype, 0, size // itemsize)


def _ours(path: Path, size: int, what: str) -> TokenLayout:
    try:
        sidecar = read_sidecar(path)
        num_tokens = int(sidecar["num_tokens"])
        itemsize = np.dtype(sidecar["dtype"]).itemsize
    except TokenizerError as e:
        raise UserError(f"The {what} file '{path}' is a token file that cannot be used: {e}") from None
    except (KeyError, TypeError, ValueError):
        raise UserError(f"The {what} file '{path}' has a sidecar without a valid dtype or num_tokens; re-create it "
                        "with `python -m tokenizer encode`.") from None
    if size != num_tokens * itemsize or num_tokens == 0:
        raise UserError(f"The {what} file '{path}' has {size} bytes but its sidecar promises {num_tokens} "
                        f"{sidecar['dtype']} ids; re-create it with `python -m tokenizer encode`.")
    return TokenLayout("llm_lit", sidecar["dtype"], 0, num_tokens, sidecar)


def largest_id(path: str, layout: TokenLayout) -> tuple[int, int]:
    """The largest id of a token file and the position of its first occurrence (reads the whole file once)."""
    ids = np.memmap(path, dtype=np.dtype(layout.dtype), mode="r", offset=layout.offset, shape=(layout.num_tokens,))
    best, where = -1, -1
    for start in range(0, len(ids), _SCAN):
        chunk = np.asarray(ids[start:start + _SCAN])
        top = int(chunk.max())
        if top > best:
            best, where = top, start + int(np.argmax(chunk))
    return best, where
