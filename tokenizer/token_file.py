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
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Protocol, Sequence

import numpy as np

from .atomic import atomic_path, atomic_write
from .bpe import Tokenizer
from .errors import TokenizerError, WriteError
from .pretokenize import TextRange, check_utf8_errors, decode_utf8, exact_blocks
from .progress import Progress
from .workers import check_num_processes, ordered_map

FORMAT = "llm_lit.tokens"
VERSION = 1
_BLOCK = 4 << 20  # bytes of text encoded at a time (at most)
_MIN_BLOCK = 1 << 20  # (at least, unless _BLOCK is smaller) see `block_size`
_TASKS_PER_WORKER = 12


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
    return encode_inputs(tok, [RangeInput(r) for r in ranges], outputs, processes, progress, utf8_errors, atomic,
                         desc, replace)


class Piece(NamedTuple):
    """A part of one output's text, read by the parent process and encoded by a worker.

    `payload` is either bytes of a text cut at an exact pre-token boundary (decoded by the
    worker; `offset` is where they were read, for error messages) or a list of whole
    documents (str), which are encoded with the document separator between them. With
    `separated`, a separator also goes before the piece (it starts a new document after the
    previous piece's). `consumed` is what the piece accounts for in the input's `size` (progress).
    """

    payload: bytes | list[str]
    offset: int
    consumed: int
    separated: bool = False


class TextInput(Protocol):
    """What `encode_inputs` encodes into one token file: any source of text read in the parent process.

    `path` names it (a file's absolute path, or a URL), `start` and `size` are the units it covers
    (bytes of a range; a record file's bytes on disk). `pieces` yields its text in order, in pieces
    of about `block_bytes` of text, reading each byte once; once it is exhausted, `seen` says what
    the sidecar records about the source
    (`file_bytes`, `mtime_ns`, `sha256` and any more keys, written as `source_<key>`).
    """

    path: str
    start: int
    size: int

    def pieces(self, specials: list[bytes], block_bytes: int) -> Iterator[Piece]: ...

    def seen(self) -> dict[str, Any]: ...


class RangeInput:
    """Bytes `[start, end)` of a local text file, read in exact blocks and hashed on the way (a `TextInput`)."""

    def __init__(self, source: TextRange) -> None:
        self.source = source
        self.path, self.start, self.size = os.path.abspath(source.path), source.start, source.size
        self._seen: dict[str, Any] | None = None

    def pieces(self, specials: list[bytes], block_bytes: int) -> Iterator[Piece]:
        """Exact blocks of about `block_bytes`; the file must not change meanwhile (TokenizerError)."""
        source = self.source
        with open(source.path, "rb") as f:
            before = os.fstat(f.fileno())
            if source.end > before.st_size or source.start >= source.end:
                raise TokenizerError(f"{source.path} has {before.st_size} bytes, so bytes {source.start}..{source.end} "
                                     "cannot be encoded; it changed after it was planned, so run again.")
            sha = hashlib.sha256()
            for a, b in exact_blocks(f, source.start, source.end, block_bytes, specials):
                f.seek(a)
                data = f.read(b - a)
                sha.update(data)
                if b == source.end:
                    self._seen = _unchanged_source(source.path, before, sha.hexdigest())
                yield Piece(data, a, len(data))

    def seen(self) -> dict[str, Any]:
        """The file's size and mtime when read, and the range's sha256."""
        assert self._seen is not None, "seen() before the range was read"
        return self._seen


def encode_inputs(
    tok: Tokenizer,
    inputs: Sequence[TextInput],
    outputs: Sequence[str | os.PathLike],
    processes: int = 1,
    progress: bool = False,
    utf8_errors: str = "strict",
    atomic: bool = True,
    desc: str = "encode",
    replace: Mapping[int, Sequence[int]] | None = None,
    on_written: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Encode each `TextInput` into its own token file (+ sidecar); returns the sidecars.

    As `encode_ranges` (same arguments), for any inputs: byte ranges of local files
    (`RangeInput`) or readers of records and streams that yield their text in pieces. Input `i`
    becomes `outputs[i]`; the pieces of all inputs are encoded by `processes` workers in order.
    `on_written(i, sidecar)` is called as each token file is complete.
    """
    check_utf8_errors(utf8_errors)
    check_num_processes(processes)
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs.")
    dtype = token_dtype(tok.vocab_size)
    total = sum(i.size for i in inputs)
    workers = min(processes, max(1, total // min(_BLOCK, _MIN_BLOCK)))
    tasks = _tasks(inputs, [s.encode("utf-8") for s in tok.special_tokens], block_size(total, workers))
    # this process encodes too (here=True): one worker fewer to start and to warm up
    results = ordered_map(_encode_block, tasks, workers, setup=_Encoder, setup_args=(tok, dtype.name, utf8_errors),
                          here=True)
    sidecars = []
    with Progress(total, desc, enabled=progress, unit="MB", unit_scale=1e6) as bar:
        writer = None
        try:
            for index, ids, max_id, consumed, last in results:
                if writer is None:
                    writer = _TokenWriter(outputs[index], atomic)
                if replace:
                    ids = replace_ids(ids, replace)
                    max_id = int(ids.max()) if len(ids) else -1
                writer.write(ids, max_id)
                bar.update(consumed)
                if last:
                    done, writer = writer, None
                    sidecar = _sidecar(tok, dtype, inputs[index], inputs[index].seen(), done, utf8_errors)
                    if replace:
                        sidecar["replaced"] = {str(k): list(v) for k, v in replace.items()}
                    sidecars.append(done.finish(sidecar))
                    if on_written is not None:
                        on_written(index, sidecar)
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


def _sidecar(tok: Tokenizer, dtype: np.dtype, source: TextInput, seen: dict[str, Any], writer: "_TokenWriter",
             utf8_errors: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "num_tokens": writer.num_tokens,
        "vocab_size": tok.vocab_size,
        "max_id": writer.max_id,
        "source_path": source.path,
        "source_start": source.start,
        "source_bytes": source.size,
        **{f"source_{key}": value for key, value in seen.items()},
        "sha256": writer.sha256(),
        "utf8_errors": utf8_errors,
        "tokenizer_fingerprint": tok.fingerprint(),
    }


def block_size(total: int, workers: int) -> int:
    """Bytes of text per task: `_BLOCK`, or for an input that would give each of `workers` processes fewer than
    `_TASKS_PER_WORKER` tasks, smaller blocks (down to `_MIN_BLOCK`), so that the last tasks of a small input
    leave no process idle for long."""
    if workers == 1:
        return _BLOCK
    return min(_BLOCK, max(_MIN_BLOCK, total // (workers * _TASKS_PER_WORKER)))


def _tasks(inputs: Sequence[TextInput], specials: list[bytes], block_bytes: int) -> Iterator[tuple]:
    """Encoding tasks `(input index, path, offset, payload, is_last, separated, consumed)`, input after input.

    Each input's next piece is read before its current one is handed out, so when the last piece
    of an input is handed out the input has been read to its end (and its `seen` is known). An
    input without any text gives one empty task (an empty token file).
    """
    for index, source in enumerate(inputs):
        pieces = iter(source.pieces(specials, block_bytes))
        current = next(pieces, None)
        if current is None:
            yield index, source.path, 0, [], True, False, 0
            continue
        while current is not None:
            following = next(pieces, None)
            yield (index, source.path, current.offset, current.payload, following is None, current.separated,
                   current.consumed)
            current = following


def _unchanged_source(path: str, before: os.stat_result, sha256: str) -> dict[str, Any]:
    try:
        after = os.stat(path)
    except OSError:
        after = None
    if after is None or (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise TokenizerError(f"{path} changed while it was being encoded; run again once nothing is writing to it.")
    return {"file_bytes": before.st_size, "mtime_ns": before.st_mtime_ns, "sha256": sha256}


def document_separator(tok: Tokenizer) -> list[int]:
    """The ids between two documents of one token file: the first special token (the end-of-text that
    separates documents in a text file too), else the ids of a blank line."""
    specials = tok.special_tokens
    return [tok.token_to_id(specials[0])] if specials else list(tok.encode("\n\n"))


def joining_text(special_tokens: Sequence[str]) -> str | None:
    """The first special token when documents joined by its text encode exactly as the documents encoded
    one by one with its id between them, else None.

    That holds when no occurrence of a special token can span the joint: the token has no
    proper prefix that is also its suffix (so no occurrence of it starts inside a document and
    ends in the joint) and no other special token overlaps it or contains it.
    """
    if not special_tokens:
        return None
    s = special_tokens[0]
    if any(s[:k] == s[-k:] for k in range(1, len(s))):
        return None
    for t in special_tokens[1:]:
        if t == s:
            continue
        if s in t or any(t[-k:] == s[:k] or t[:k] == s[-k:] for k in range(1, min(len(s), len(t)))):
            return None
    return s


class _Encoder:
    """A worker's state: the tokenizer (its pre-token cache warms up block after block), the id dtype and
    how the documents of a list join."""

    def __init__(self, tok: Tokenizer, dtype: str, utf8_errors: str) -> None:
        self.tok = tok
        self.dtype = np.dtype(dtype)
        self.utf8_errors = utf8_errors
        self.joiner = joining_text(tok.special_tokens)
        self._separator: np.ndarray | None = None

    @property
    def separator(self) -> np.ndarray:
        """`document_separator` as an array of the dtype (worked out on first use)."""
        if self._separator is None:
            self._separator = np.asarray(document_separator(self.tok), dtype=self.dtype)
        return self._separator

    def documents(self, texts: list[str]) -> np.ndarray:
        """Ids of the documents with the separator between them: one encode of the texts joined by the
        end-of-text token where that is exact (`joining_text`), else one encode each."""
        if self.joiner is not None:
            return self.tok.encode_array(self.joiner.join(texts), self.dtype)
        parts: list[np.ndarray] = []
        for i, text in enumerate(texts):
            if i:
                parts.append(self.separator)
            parts.append(self.tok.encode_array(text, self.dtype))
        return np.concatenate(parts) if parts else np.empty(0, self.dtype)


def _encode_block(encoder: _Encoder, task: tuple) -> tuple[int, np.ndarray, int, int, bool]:
    """`(input index, ids, largest id (-1 if none), bytes it accounts for, is_last)` of one task."""
    index, path, offset, payload, last, separated, consumed = task
    if isinstance(payload, bytes):
        ids = encoder.tok.encode_array(decode_utf8(payload, path, offset, encoder.utf8_errors), encoder.dtype)
    else:
        ids = encoder.documents(payload)
    if separated:
        ids = np.concatenate([encoder.separator, ids])
    return index, ids, int(ids.max()) if len(ids) else -1, consumed, last


class _TokenWriter:
    """One token file being written: at a temporary name (atomic) or at its final, new name."""

    def __init__(self, path: str | os.PathLike, atomic: bool) -> None:
        self.path = str(path)
        self.atomic = atomic
        self.num_tokens = 0
        self.max_id = -1
        self._digest = hashlib.sha256()  # of the file's bytes, as written: what later checks compare against
        self._context = atomic_path(self.path) if atomic else None
        try:
            target = self._context.__enter__() if atomic else self.path
            self._file = open(target, "wb" if atomic else "xb")
        except OSError as e:
            self._fail(e)

    def write(self, ids: np.ndarray, max_id: int) -> None:
        """Append ids (a 1-D array of the file's dtype)."""
        data = ids.tobytes()
        try:
            self._file.write(data)
        except OSError as e:
            self._fail(e)
        self._digest.update(data)
        self.num_tokens += len(ids)
        self.max_id = max(self.max_id, max_id)

    def sha256(self) -> str:
        """sha256 hex digest of the bytes written so far."""
        return self._digest.hexdigest()

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
