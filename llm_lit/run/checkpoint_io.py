"""Atomic checkpoint files: Lightning's checkpoint IO writing under a temporary name and renaming, and
loading with `weights_only=True`, verifying checksums.

`AtomicCheckpointIO` writes every checkpoint, with its checksums, under a temporary name and
renames it, so a run killed mid-write leaves the previous `last.ckpt` (or none), never half of
one; it loads with `weights_only=True`, verifying the checksums (handing over the copy the CLI
already read and verified, when the file is unchanged) and turns unreadable or corrupt files
and full disks into one-line `UserError`s.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.plugins.io import TorchCheckpointIO

from llm_lit.errors import UserError
from llm_lit.run.checkpoint import LoadedCheckpoint, read_checkpoint, save_checkpoint_file


# ---------------------------------------------------------------------- atomic checkpoint files
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, writing atomically and loading with `weights_only=True`.

    Args:
        preloaded: A checkpoint already read (by the CLI, for `--ckpt_path FILE`); loading that
            same, unchanged file returns it instead of reading the file a second time.
    """

    def __init__(self, preloaded: Optional[LoadedCheckpoint] = None) -> None:
        super().__init__()
        self.preloaded = preloaded

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Optional[Any] = None) -> None:
        """Write `checkpoint` with its checksums to `path` via a temporary file renamed on success (the old
        file survives failures)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options.")
        try:
            save_checkpoint_file(checkpoint, path)
        except OSError as e:
            raise UserError(write_failure_message(path, e, "checkpoint", "the checkpoint callback's dirpath")) from e

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """The checkpoint at `path`, loaded with `weights_only=True`; `UserError` if missing, truncated or corrupt."""
        contents = self.preloaded.take(path) if self.preloaded is not None else None
        return contents if contents is not None else read_checkpoint(path, mmap=False)


def remove_stale_temporary_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint writes a killed run left in `folder` (`.last.ckpt.*.tmp`);
    call it only while holding the folder's run lock, when no write can be under way. Returns them."""
    stale = sorted(Path(folder).glob(".*.ckpt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_failure_message(path: str | os.PathLike, error: OSError, what: str, setting: str) -> str:
    """One sentence for a failed write: which file, why (full disk, no permission, ...) and the fix."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        fix = f"free some space (the previous {what} is intact) or point {setting} at another disk"
    else:
        fix = f"make its folder writable or point {setting} at a writable folder"
    return f"Cannot write the {what} '{path}' ({reason}); {fix}."
