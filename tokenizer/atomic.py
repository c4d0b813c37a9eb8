"""Atomic file writes: write under a temporary name in the same folder, then rename.

A reader never sees a half-written file: after a crash (or a full disk) at any point,
the destination holds either the previous good file or nothing. Used by the tokenizer,
the token files and by `llm_lit` for checkpoints and predictions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from .errors import TokenizerError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    The caller writes the whole file at the yielded path (by any means, e.g. `torch.save`).
    If the block raises, the temporary file is removed and `path` is left untouched.
    Raises `OSError` with the destination named when the folder cannot be written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    _chmod_like_open(tmp)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a file for writing that appears at `path` only once the block succeeds.

    `mode` is "w" (text, with `encoding`) or "wb" (binary).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}.")
    with atomic_path(path) as tmp:
        if mode == "wb":
            with open(tmp, "wb") as f:
                yield f
        else:
            with open(tmp, "w", encoding=encoding, newline="\n") as f:
                yield f


def write_text(path: str | os.PathLike, text: str, what: str) -> None:
    """Write `text` to `path` atomically; `TokenizerError` naming `what` (e.g. "tokenizer file") if it cannot."""
    try:
        with atomic_write(path) as f:
            f.write(text)
    except OSError as e:
        raise TokenizerError(f"cannot write {what} {path} ({e.strerror or e}); choose a path in a writable folder.") from None


def _chmod_like_open(path: Path) -> None:
    # mkstemp creates files private (0600); give the file the mode open() would have (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
