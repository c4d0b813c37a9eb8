"""Record files and remote text as `tokenizer.token_file.TextInput`s: what the token cache encodes
into one shard per file.

`RecordInput` reads a JSONL / Parquet / Arrow file with its format's reader and hands its records'
texts on in pieces of about a block, each record a document (the encoder puts the document
separator between them). `StreamTextInput` reads a remote text file front to back, cut at exact
pre-token boundaries, as one document. Both hash what they read when they read it in order, record
what the sidecar keeps about the source (size, modification time or ETag, sha256, records, bytes of
text) and refuse a file that changed while it was read.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any, BinaryIO, Iterator, Optional

from llm_lit.data.formats import remote
from llm_lit.data.formats.locate import Located
from llm_lit.data.formats.records import RecordReader, reader_for
from tokenizer.errors import TokenizerError
from tokenizer.pretokenize import find_cut
from tokenizer.token_file import Piece

_CHUNK = 1 << 20


class RecordInput:
    """The records of one file, each a document, as pieces of about a block of text."""

    def __init__(self, located: Located, text_field: str) -> None:
        self.located = located
        self.path, self.start, self.size = located.path, 0, located.size
        self.reader: RecordReader = reader_for(located.path, located.format, text_field, located.size)
        self._seen: Optional[dict[str, Any]] = None

    def check(self) -> None:
        """Refuse the file now if its text field is missing (reads its schema or first record)."""
        with _opened(self.located, None, self.reader.sequential) as raw:
            self.reader.check(raw)

    def first_texts(self, limit: int) -> Iterator[str]:
        """The texts of the first records, until about `limit` characters (a sample; nothing is hashed)."""
        size = 0
        with _opened(self.located, None, self.reader.sequential) as raw:
            for batch, _ in self.reader.batches(raw):
                for text in batch:
                    yield text
                    size += len(text)
                    if size >= limit:
                        return

    def pieces(self, specials: list[bytes], block_bytes: int) -> Iterator[Piece]:
        """Pieces of whole records of about `block_bytes` of text, in order; then `seen` is known."""
        before = _state(self.located)
        digest = hashlib.sha256() if self.reader.sequential else None
        records = text_bytes = 0
        texts: list[str] = []
        size = consumed = 0
        first = True
        with _opened(self.located, digest, self.reader.sequential) as raw:
            for batch, used in self.reader.batches(raw):
                records += len(batch)
                for text in batch:
                    size += len(text) if text.isascii() else len(text.encode("utf-8"))
                texts += batch
                consumed += used
                if size >= block_bytes:
                    text_bytes += size
                    yield Piece(texts, 0, consumed, separated=not first)
                    texts, size, consumed, first = [], 0, 0, False
        text_bytes += size
        sha256 = digest.hexdigest() if digest is not None else \
            (None if self.located.remote else hash_file(self.path))
        _check_unchanged(self.located, before)
        self._seen = {"file_bytes": self.located.size, "mtime_ns": self.located.mtime_ns, "sha256": sha256,
                      "version": self.located.version, "records": records, "text_bytes": text_bytes}
        if texts or consumed:
            yield Piece(texts, 0, consumed, separated=not first)

    def seen(self) -> dict[str, Any]:
        """What the sidecar records about the file (after `pieces` is exhausted)."""
        assert self._seen is not None, "seen() before the file was read"
        return self._seen


class StreamTextInput:
    """A remote text file, read once front to back in exact blocks: one document."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.path, self.start, self.size = located.path, 0, located.size
        self._seen: Optional[dict[str, Any]] = None

    def pieces(self, specials: list[bytes], block_bytes: int) -> Iterator[Piece]:
        """Exact blocks of about `block_bytes`; then `seen` is known."""
        before = _state(self.located)
        digest = hashlib.sha256()
        margin = max((len(s) for s in specials), default=1)
        buf, offset, eof = b"", 0, False
        with _opened(self.located, digest, True) as raw:
            while not eof or buf:
                while not eof and len(buf) < 2 * block_bytes + margin:
                    data = raw.read(_CHUNK)
                    eof = not data
                    buf += data
                cut = -1 if eof else find_cut(buf, block_bytes, len(buf) - margin, specials)
                if cut <= 0:
                    if not eof:  # no exact boundary in two blocks: read on
                        more = raw.read(_CHUNK)
                        eof = not more
                        buf += more
                        continue
                    cut = len(buf)
                block, buf = buf[:cut], buf[cut:]
                if not buf and eof:
                    _check_unchanged(self.located, before)
                    self._seen = {"file_bytes": self.located.size, "mtime_ns": self.located.mtime_ns,
                                  "sha256": digest.hexdigest(), "version": self.located.version,
                                  "text_bytes": offset + len(block)}
                yield Piece(block, offset, len(block))
                offset += len(block)

    def seen(self) -> dict[str, Any]:
        """What the sidecar records about the file (after `pieces` is exhausted)."""
        assert self._seen is not None, "seen() before the file was read"
        return self._seen


def hash_file(path: str) -> str:
    """sha256 hex digest of a local file, read in order."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _opened:
    """The file to read: a local path string for a columnar reader that seeks (pyarrow opens it itself),
    else a buffered binary stream that feeds `digest` as it is read."""

    def __init__(self, located: Located, digest: Any, sequential: bool) -> None:
        self.located, self.digest, self.sequential = located, digest, sequential
        self._file: Any = None

    def __enter__(self) -> Any:
        located = self.located
        if located.remote:
            self._file = remote.open_binary(located.path)
        elif not self.sequential:
            return located.path
        else:
            self._file = open(located.path, "rb")
        if not self.sequential:
            return self._file
        return io.BufferedReader(_Hashing(self._file, self.digest), buffer_size=_CHUNK)

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()


class _Hashing(io.RawIOBase):
    """A raw stream that feeds what is read through it to a hash (None: no hash)."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        if self._digest is not None:
            self._digest.update(data)
        return n


def _state(located: Located) -> tuple:
    """What says whether the file changed: local size, mtime and inode; remote size and version."""
    if located.remote:
        info = remote.stat(located.path)
        return int(info.get("size") or 0), remote.version_of(info)
    try:
        st = os.stat(located.path)
    except OSError:
        return None, None, None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _check_unchanged(located: Located, before: tuple) -> None:
    """TokenizerError if the file is not as it was planned and when reading began."""
    planned = (located.size, located.version) if located.remote else (located.size, located.mtime_ns)
    if before[:2] != planned or _state(located) != before:
        raise TokenizerError(f"{located.path} changed while it was being encoded; run again once nothing is "
                             "writing to it.")
