"""Decompressing streams for `.jsonl.gz` and `.jsonl.zst`: read sequentially, and a file cut short is an
error (`Truncated`), never a silently shorter corpus."""

from __future__ import annotations

import gzip
import io
import zlib
from typing import BinaryIO

from llm_lit.errors import UserError


class Truncated(Exception):
    """The compressed stream ended before its end marker, or is damaged."""


def decompressed(raw: BinaryIO, fmt: str, path: str) -> BinaryIO:
    """A binary stream of the text inside `raw` for format `fmt` ("jsonl", "jsonl.gz" or "jsonl.zst")."""
    if fmt == "jsonl.gz":
        return _GzipStream(raw)
    if fmt == "jsonl.zst":
        try:
            import zstandard
        except ImportError:
            raise UserError(f"Reading '{path}' needs zstandard, which is not installed; pip install "
                            "'llm_lit[formats]' (or pip install zstandard).") from None
        return io.BufferedReader(_ZstdStream(raw, zstandard), buffer_size=1 << 20)
    return raw


class _GzipStream(io.RawIOBase):
    """gzip's reader with its errors (EOFError, BadGzipFile, zlib.error) raised as `Truncated`."""

    def __init__(self, raw: BinaryIO) -> None:
        self._inner = gzip.GzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            return self._inner.readinto(b)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise Truncated(str(e)) from None

    def readline(self, size: int = -1) -> bytes:
        try:
            return self._inner.readline(size)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise Truncated(str(e)) from None


class _ZstdStream(io.RawIOBase):
    """Zstandard frames one after another (as `zstd` writes them), decompressed as they are read; a stream
    that ends inside a frame raises `Truncated` (zstandard's own stream reader would just stop)."""

    def __init__(self, raw: BinaryIO, zstandard) -> None:
        self._raw, self._zstd = raw, zstandard
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False  # bytes of a frame were fed and its end not reached yet
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise Truncated("the file ends inside a zstandard frame")
                return 0
            self._pending = self._feed(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _feed(self, chunk: bytes) -> bytes:
        out = []
        while chunk:
            try:
                out.append(self._obj.decompress(chunk))
            except self._zstd.ZstdError as e:
                raise Truncated(str(e)) from None
            self._in_frame = True
            if self._obj.eof:  # a frame ended; what follows is the next frame
                chunk = self._obj.unused_data
                self._obj = self._zstd.ZstdDecompressor().decompressobj()
                self._in_frame = False
            else:
                chunk = b""
        return b"".join(out)
