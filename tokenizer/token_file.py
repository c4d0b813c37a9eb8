"""Token files: a corpus encoded once into a flat binary array of ids plus a JSON sidecar.

`FILE.bin` holds the ids back to back (uint16 when the vocab has at most 65,536 ids, else
uint32, native little-endian), readable with `np.memmap`. `FILE.bin.json` records what
it holds and where it came from. Both are written under temporary names and renamed,
the sidecar last, so a token file without a matching sidecar is never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .atomic import atomic_path, atomic_write
from .bpe import Tokenizer
from .errors import TokenizerError, WriteError
from .pretokenize import TextRange, check_utf8_errors, decode_utf8, exact_blocks
from .progress import Progress
from .workers import check_num_processes, ordered_map

FORMAT = "llm_lit.tokens"
VERSION = 1
_BLOCK = 4 << 20  # bytes of text encoded at a time


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_token_file(
    tok: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    progress: bool = False,
    utf8_errors: str = "strict",
    processes: int = 1,
) -> dict[str, Any]:
    """Encode the UTF-8 text file `input_path` into `output_path` (+ `.json` sidecar); returns the sidecar.

    Streams the input in blocks of a few MiB cut at exact pre-token boundaries, so memory
    stays bounded however large the input; `processes > 1` encodes blocks in that many
    worker processes, writing the same bytes. `utf8_errors="replace"` turns invalid UTF-8
    into U+FFFD instead of refusing the file. Written atomically: on any error the
    previous `output_path` (or none) is left.
    """
    input_path, output_path = str(input_path), str(output_path)
    if not os.path.isfile(input_path):
        raise TokenizerError(f"input file {input_path} does not exist; pass the path of a UTF-8 text file.")
    if os.path.getsize(input_path) == 0:
        raise TokenizerError(f"input file {input_path} is empty; pass a file with some text in it.")
    return encode_ranges(tok, [TextRange.whole(input_path)], [output_path], processes, progress, utf8_errors)[0]


def encode_ranges(
    tok: Tokenizer,
    ranges: Sequence[TextRange],
    outputs: Sequence[str | os.PathLike],
    processes: int = 1,
    progress: bool = False,
    utf8_errors: str = "strict",
    atomic: bool = True,
    desc: str = "encode",
    replace: Mapping[int, Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """Encode each byte range of a text file into its own token file (+ sidecar); returns the sidecars.

    Args:
        tok: the tokenizer.
        ranges: non-empty byte ranges; range `i` is encoded as a text of its own into `outputs[i]`.
        outputs: token file paths, one per range.
        processes: worker processes encoding blocks (1: this process only). The files are
            byte for byte the same for any number.
        progress: draw a progress line on stderr (MB done, MB/s, time left).
        utf8_errors: "strict" refuses text that is not UTF-8 (saying where); "replace" uses U+FFFD.
        atomic: write each token file under a temporary name and rename it (the previous
            file stays on error). With False the file is written at its final name, which
            must be new; on error the partial file is removed. Sidecars are always atomic
            and written after their token file, so a token file is trusted only once complete.
        desc: the progress line's label.
        replace: ids written as other ids, e.g. `{eot: (eos, bos)}` writes each end-of-text id as
            EOS then BOS, wrapping the documents a text holds; recorded in the sidecar.

    Every range is read once, in order, by this process, which hashes it (the sidecar's
    `source_sha256`) and hands exact-cut blocks to the workers. A source file that changes
    while it is read is refused.
    """
    check_utf8_errors(utf8_errors)
    check_num_processes(processes)
    if len(ranges) != len(outputs):
        raise ValueError(f"{len(ranges)} ranges but {len(outputs)} outputs.")
    dtype = token_dtype(tok.vocab_size)
    finished: dict[int, dict[str, Any]] = {}  # range index -> what its reader saw (size, mtime, sha256)
    tasks = _blocks(ranges, [s.encode("utf-8") for s in tok.special_tokens], utf8_errors, finished)
    workers = min(processes, max(1, sum(r.size for r in ranges) // _BLOCK))
    results = ordered_map(_encode_block, tasks, workers, setup=_Encoder, setup_args=(tok, dtype.name, utf8_errors))
    sidecars = []
    with Progress(sum(r.size for r in ranges), desc, enabled=progress, unit="MB", unit_scale=1e6) as bar:
        writer = None
        try:
            for index, ids, max_id, num_bytes, last in results:
                if writer is None:
                    writer = _TokenWriter(outputs[index], atomic)
                if replace:
                    ids = replace_ids(ids, replace)
                    max_id = int(ids.max()) if len(ids) else -1
                writer.write(ids, max_id)
                bar.update(num_bytes)
                if last:
                    done, writer = writer, None
                    sidecar = _sidecar(tok, dtype, ranges[index], finished.pop(index), done, utf8_errors)
                    if replace:
                        sidecar["replaced"] = {str(k): list(v) for k, v in replace.items()}
                    sidecars.append(done.finish(sidecar))
        except BaseException:
            if writer is not None:
                writer.abandon()
            raise
    return sidecars


def replace_ids(ids: np.ndarray, replace: Mapping[int, Sequence[int]]) -> np.ndarray:
    """`ids` (1-D) with each id that is a key of `replace` written as the ids it maps to (possibly none)."""
    for old, new in replace.items():
        where = np.flatnonzero(ids == old)
        if not len(where):
            continue
        counts = np.ones(len(ids), dtype=np.int64)
        counts[where] = len(new)
        out = np.repeat(ids, counts)  # each replaced id repeated len(new) times, then overwritten
        first = where + np.arange(len(where)) * (len(new) - 1)  # where each replacement starts in `out`
        for j, value in enumerate(new):
            out[first + j] = value
        ids = out
    return ids


def _sidecar(tok: Tokenizer, dtype: np.dtype, source: TextRange, seen: dict[str, Any], writer: "_TokenWriter",
             utf8_errors: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "num_tokens": writer.num_tokens,
        "vocab_size": tok.vocab_size,
        "max_id": writer.max_id,
        "source_path": os.path.abspath(source.path),
        "source_start": source.start,
        "source_bytes": source.size,
        "source_file_bytes": seen["size"],
        "source_mtime_ns": seen["mtime_ns"],
        "source_sha256": seen["sha256"],
        "utf8_errors": utf8_errors,
        "tokenizer_fingerprint": tok.fingerprint(),
    }


def _blocks(ranges: Sequence[TextRange], specials: list[bytes], utf8_errors: str,
            finished: dict[int, dict[str, Any]]) -> Iterator[tuple]:
    """Encoding tasks `(range index, path, offset, bytes, is_last)`: each range's exact blocks, read and hashed in order.

    Before the last block of range `i` is handed out, `finished[i]` gets the file's size,
    mtime and the range's sha256, after checking that the file did not change meanwhile.
    """
    for index, source in enumerate(ranges):
        with open(source.path, "rb") as f:
            before = os.fstat(f.fileno())
            if source.end > before.st_size or source.start >= source.end:
                raise TokenizerError(f"{source.path} has {before.st_size} bytes, so bytes {source.start}..{source.end} "
                                     "cannot be encoded; it changed after it was planned, so run again.")
            sha = hashlib.sha256()
            for a, b in exact_blocks(f, source.start, source.end, _BLOCK, specials):
                f.seek(a)
                data = f.read(b - a)
                sha.update(data)
                last = b == source.end
                if last:
                    finished[index] = _unchanged_source(source.path, before, sha.hexdigest())
                yield index, source.path, a, data, last


def _unchanged_source(path: str, before: os.stat_result, sha256: str) -> dict[str, Any]:
    try:
        after = os.stat(path)
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise TokenizerError(f"{path} changed while it was being encoded; run again once nothing is writing to it.")
    return {"size": before.st_size, "mtime_ns": before.st_mtime_ns, "sha256": sha256}


class _Encoder:
    """A worker's state: the tokenizer (its pre-token cache warms up block after block) and the id dtype."""

    def __init__(self, tok: Tokenizer, dtype: str, utf8_errors: str) -> None:
        self.tok = tok
        self.dtype = np.dtype(dtype)
        self.utf8_errors = utf8_errors


def _encode_block(encoder: _Encoder, task: tuple) -> tuple[int, np.ndarray, int, int, bool]:
    """`(range index, ids, largest id (-1 if none), bytes encoded, is_last)` of one block."""
    index, path, offset, data, last = task
    text = decode_utf8(data, path, offset, encoder.utf8_errors)
    ids = encoder.tok.encode_array(text, encoder.dtype)
    return index, ids, int(ids.max()) if len(ids) else -1, len(data), last


class _TokenWriter:
    """One token file being written: at a temporary name (atomic) or at its final, new name."""

    def __init__(self, path: str | os.PathLike, atomic: bool) -> None:
        self.path = str(path)
        self.atomic = atomic
        self.num_tokens = 0
        self.max_id = -1
        self._context = atomic_path(self.path) if atomic else None
        try:
            target = self._context.__enter__() if atomic else self.path
            self._file = open(target, "wb" if atomic else "xb")
        except OSError as e:
            self._fail(e)

    def write(self, ids: np.ndarray, max_id: int) -> None:
        """Append ids (a 1-D array of the file's dtype)."""
        try:
            self._file.write(ids.tobytes())
        except OSError as e:
            self._fail(e)
        self.num_tokens += len(ids)
        self.max_id = max(self.max_id, max_id)

    def finish(self, sidecar: dict[str, Any]) -> dict[str, Any]:
        """Make the file durable, put it in place, then write its sidecar; returns the sidecar."""
        try:
            self._file.close()
            if self.atomic:
                self._context.__exit__(None, None, None)  # fsync + rename (or remove the temporary file)
            else:
                _fsync(self.path)
            with atomic_write(self.path + ".json") as f:
                json.dump(sidecar, f, indent=1)
        except OSError as e:
            if not self.atomic:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
            self._fail(e)
        return sidecar

    def abandon(self) -> None:
        """Remove what was written (after an error elsewhere)."""
        self._file.close()
        if self.atomic:
            self._context.__exit__(RuntimeError, RuntimeError("abandoned"), None)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def _fail(self, e: OSError) -> None:
        reason = e.strerror or str(e)
        raise WriteError(f"cannot write token file {self.path} ({reason}); "
                         "choose a path in a writable folder with enough free space.", self.path, reason) from None


def _fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


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
