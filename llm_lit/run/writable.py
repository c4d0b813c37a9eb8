"""Output folders and files that cannot be written, found before training (or generating) rather than at
the first save: each is one sentence naming the path and the setting that moves it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from llm_lit.errors import UserError


def check_writable_dir(path: str | os.PathLike, what: str, setting: str) -> None:
    """Check that files can be created in folder `path` (else `UserError`).

    Folders it creates for the check are removed again, so a run that stops before writing
    anything leaves no empty run folder behind.
    """
    folder = Path(path).expanduser()
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".llm_lit_write_test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"The {what} folder '{folder}' cannot be written ({e.strerror or e}); "
                        f"pass a writable {setting}.") from e
    finally:
        for made in created:
            with contextlib.suppress(OSError):  # not empty: something else has written there since
                made.rmdir()


def check_writable_file(path: str | os.PathLike, what: str, setting: str) -> None:
    """Check that the file `path` can be written (a file or nothing there, in a writable folder), else `UserError`."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"{setting} '{file}' is a folder; pass the path of the {what} file to write, "
                        f"e.g. {file / f'{what}.jsonl'}.")
    check_writable_dir(file.parent, what, setting)
