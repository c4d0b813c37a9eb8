"""One `fit` per checkpoint folder: a lock file that names the run holding the folder.

Two runs writing checkpoints into the same folder would overwrite each other's `last.ckpt`
and best checkpoints, and a later `--ckpt_path last` would resume from whichever wrote last.
`RunLock.acquire(folder)` takes an exclusive `flock` on the file `.<folder name>.lock` beside the
folder (`runs/x/version_0/.checkpoints.lock`; beside it, not in it, so a run refused or stopped
before it writes anything leaves no folder behind) and writes the run's host, pid and start date
into it; a second run finds the lock taken and is refused in
one line naming that run. The operating system drops the lock when its process ends, however
it ends (a SIGKILL, a crash, a reboot), so a stale lock never blocks the next run, and the
run that continues with `--ckpt_path last` simply takes it. The file itself stays (removing it
could let two runs lock two different files); what it says matters only while it is locked.
On a file system without locks the run goes on unlocked.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any, Optional

from llm_lit.errors import UserError


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of checkpoint folder `folder`: `.<name>.lock` in its parent."""
    folder = Path(folder).expanduser().absolute()
    return folder.parent / f".{folder.name}.lock"


class RunLock:
    """The lock of one checkpoint folder, held by this process until it ends or calls `release`."""

    def __init__(self, path: Path, file: Optional[IO[str]]) -> None:
        self.path = path
        self._file = file

    @classmethod
    def acquire(cls, folder: str | os.PathLike) -> "RunLock":
        """Hold `folder`'s lock, or raise `UserError` naming the run that holds it."""
        import fcntl

        path = lock_path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+", encoding="utf-8")  # created if missing; the holder's record is not touched
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _record(file)
            file.close()
            raise UserError(f"Another llm_lit fit ({holder}) is writing checkpoints into '{Path(folder)}'; wait for "
                            "it to end, or give this run another folder (--run_name or --out_dir).") from None
        except OSError:  # no locks on this file system
            file.close()
            return cls(path, None)
        file.seek(0)
        file.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}, file)
        file.flush()
        return cls(path, file)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (False on a file system without locks, or after `release`)."""
        return self._file is not None

    def release(self) -> None:
        """Let another run take the folder (closing the file drops the lock)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _record(file: IO[str]) -> str:
    """Who holds a lock, from its file: 'pid 123 on host, started 2026-01-01 12:00:00'."""
    file.seek(0)
    try:
        holder: dict[str, Any] = json.loads(file.read())
    except ValueError:
        return "a run that is starting"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('date')}"
