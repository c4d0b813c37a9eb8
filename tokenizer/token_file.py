"""Token files: a corpus encoded once into a flat binary array of ids plus a JSON sidecar.

`FILE.bin` holds the ids back to back (uint16 when the vocab has at most 65,536 ids, else
uint32, native little-endian), readable with `np.memmap`. `FILE.bin.json` records what
it holds and where it came from. Both are written under temporary names and renamed,
the sidecar last, so a token file without a matching sidecar is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from .atomic import atomic_path, atomic_write
from .bpe import Tokenizer
from .errors import TokenizerError
from .pretokenize import check_utf8_errors, decode_utf8, next_cut
from .progress import Progress

FORMAT = "llm_lit.tokens"
VERSION = 1
_BLOCK = 4 << 20  # bytes of text encoded at a time


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_token_file(
    tok: Tokenizer, input_path: str | os.PathLike, output_path: str | os.PathLike, progress: bool = False, utf8_errors: str = "strict"
) -> dict[str, Any]:
    """Encode the UTF-8 text file `input_path` into `output_path` (+ `.json` sidecar); returns the sidecar.

    Streams the input in blocks of a few MiB cut at exact pre-token boundaries, so memory
    stays bounded however large the input. `utf8_errors="replace"` turns invalid UTF-8 into
    U+FFFD instead of refusing the file.
    """
    check_utf8_errors(utf8_errors)
    input_path, output_path = str(input_path), str(output_path)
    if not os.path.isfile(input_path):
        raise TokenizerError(f"input file {input_path} does not exist; pass the path of a UTF-8 text file.")
    size = os.path.getsize(input_path)
    if size == 0:
        raise TokenizerError(f"input file {input_path} is empty; pass a file with some text in it.")
    dtype = token_dtype(tok.vocab_size)
    specials = [s.encode("utf-8") for s in tok.special_tokens]
    sha = hashlib.sha256()
    num_tokens = 0
    try:
        with atomic_path(output_path) as tmp, open(tmp, "wb") as out, open(input_path, "rb") as src:
            with Progress(size, "encode", enabled=progress, unit="MB", unit_scale=1e6) as bar:
                start = 0
                while start < size:
                    cut = next_cut(src, start + _BLOCK, size, specials) if start + _BLOCK < size else -1
                    end = size if cut == -1 else cut
                    src.seek(start)
                    data = src.read(end - start)
                    sha.update(data)
                    ids = np.array(tok.encode(decode_utf8(data, input_path, start, utf8_errors)), dtype=dtype)
                    ids.tofile(out)
                    num_tokens += len(ids)
                    bar.update(end - start)
                    start = end
            out.flush()
        sidecar = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype.name,
            "num_tokens": num_tokens,
            "vocab_size": tok.vocab_size,
            "source_path": os.path.abspath(input_path),
            "source_bytes": size,
            "source_sha256": sha.hexdigest(),
            "utf8_errors": utf8_errors,
            "tokenizer_fingerprint": tok.fingerprint(),
        }
        with atomic_write(output_path + ".json") as f:
            json.dump(sidecar, f, indent=1)
    except OSError as e:
        raise TokenizerError(f"cannot write token file {output_path} ({e.strerror or e}); choose a path in a writable folder.") from None
    return sidecar


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The checked sidecar of token file `path`; TokenizerError if it is missing or not ours."""
    sidecar_path = f"{path}.json"
    try:
        with open(sidecar_path, encoding="utf-8") as f:
            sidecar = json.load(f)
    except FileNotFoundError:
        raise TokenizerError(f"token file {path} has no sidecar {sidecar_path}; re-create it with `python -m tokenizer encode`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenizerError(f"sidecar {sidecar_path} is not valid JSON; re-create the token file with `python -m tokenizer encode`.") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or sidecar.get("version") != VERSION:
        raise TokenizerError(
            f"sidecar {sidecar_path} is not an {FORMAT} version {VERSION} file; re-create the token file with `python -m tokenizer encode`."
        )
    return sidecar


def read_token_file(path: str | os.PathLike, expected_tokenizer_fingerprint: str | None = None, vocab_size: int | None = None) -> np.memmap:
    """Open token file `path` read-only as a 1-D `np.memmap` of ids, shape `(num_tokens,)`.

    Raises TokenizerError when the sidecar is missing or damaged, the file size does not
    match it, it was made by another tokenizer than `expected_tokenizer_fingerprint`, or
    its ids do not fit `vocab_size`.
    """
    sidecar = read_sidecar(path)
    try:
        dtype = np.dtype(sidecar["dtype"])
        num_tokens = int(sidecar["num_tokens"])
    except (KeyError, TypeError, ValueError):
        raise TokenizerError(f"sidecar {path}.json lacks a valid dtype or num_tokens; re-create the token file with `python -m tokenizer encode`.") from None
    if not os.path.isfile(path):
        raise TokenizerError(f"token file {path} does not exist; create it with `python -m tokenizer encode`.")
    actual = os.path.getsize(path)
    if actual != num_tokens * dtype.itemsize:
        raise TokenizerError(
            f"token file {path} has {actual} bytes but its sidecar promises {num_tokens} {dtype.name} ids "
            f"({num_tokens * dtype.itemsize} bytes); re-create it with `python -m tokenizer encode`."
        )
    found = sidecar.get("tokenizer_fingerprint")
    if expected_tokenizer_fingerprint is not None and found != expected_tokenizer_fingerprint:
        raise TokenizerError(
            f"token file {path} was made by another tokenizer (fingerprint {str(found)[:12]}…, expected "
            f"{expected_tokenizer_fingerprint[:12]}…); re-encode it with the current tokenizer."
        )
    if vocab_size is not None and int(sidecar.get("vocab_size", 0)) > vocab_size:
        raise TokenizerError(
            f"token file {path} holds ids up to {sidecar.get('vocab_size')} but the model's vocab_size is {vocab_size}; "
            "use a vocab_size at least the tokenizer's."
        )
    if num_tokens == 0:
        raise TokenizerError(f"token file {path} holds no tokens; encode a non-empty text file.")
    return np.memmap(path, dtype=dtype, mode="r", shape=(num_tokens,))
