"""`BuildLock`: one builder per token-cache folder, across every process and machine that shares it.

The lock is a file, `.build.lock`, holding the builder's host, pid and start time: written
under a private name, then hard-linked to `.build.lock` (atomic, and failing if it exists, on
local file systems and on NFS v3+), so no process ever sees it empty. While it builds,
a background thread touches the file every `heartbeat_s` seconds. Another process that
finds the lock waits, polling, and takes it over when it is stale:

* its owner ran on this host and that pid is gone (killed: take over at once), or
* it is empty for `EMPTY_LOCK_GRACE_S` (an older version's builder killed between creating
  the file and writing it), or
* its modification time has not changed for `stale_after_s` seconds of the waiter's own
  clock (a builder on another machine that died; no clocks are compared).

A folder where the lock cannot be written (a read-only disk) is one `UserError`.

A stale lock is first renamed to a private name, so of several waiters exactly one takes
it; the taker checks that what it renamed is the stale lock it saw (not a fresh one).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from llm_lit.errors import UserError

LOCK_NAME = ".build.lock"
#: Seconds an empty lock file (its owner killed between creating and writing it) is given before it is taken over.
EMPTY_LOCK_GRACE_S = 2.0


class BuildLock:
    """Hold the build lock of `folder` for the duration of a `with` block (waiting for it first).

    Args:
        folder: the cache folder.
        log: where to say that this process waits or takes over a stale lock (default: stderr).
        heartbeat_s: seconds between refreshes of the lock file while held.
        stale_after_s: seconds without a refresh after which a waiter takes the lock over.
        poll_s: seconds between looks at the lock while waiting.
    """

    def __init__(self, folder: Path, log: Optional[Callable[[str], None]] = None, heartbeat_s: float = 5.0,
                 stale_after_s: float = 60.0, poll_s: float = 0.5) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.poll_s = poll_s
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                      "token": secrets.token_hex(8)}
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    def __enter__(self) -> "BuildLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock file, waiting while another live builder holds it."""
        announced = False
        seen: Optional[tuple[bytes, int]] = None  # (content, mtime) of the lock as last seen
        seen_since = time.monotonic()
        while not self._try_create():
            held = self._read()
            if held is None:
                continue  # released between our attempt and the read
            content, mtime_ns = held
            if seen != (content, mtime_ns):
                seen, seen_since = (content, mtime_ns), time.monotonic()
            owner = _parse(content)
            unchanged_for = time.monotonic() - seen_since
            # An empty lock was left by a process killed between creating and writing it (older llm_lit versions
            # created it empty first; this one never shows it empty): stale once it stays empty for a moment.
            empty_and_left = not content.strip() and unchanged_for > EMPTY_LOCK_GRACE_S
            if empty_and_left or self._owner_is_gone(owner) or unchanged_for > self.stale_after_s:
                if self._break(content):
                    self.log(f"token cache: the build lock {self.path} was left by {_who(owner)}, which is no longer "
                             "running; taking over.")
                continue
            if not announced and content.strip():  # (an empty lock is taken over in a moment, unannounced)
                self.log(f"token cache: waiting for {_who(owner)}, which is building {self.path.parent}.")
                announced = True
            time.sleep(self.poll_s)
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._beat, name="token-cache-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        held = self._read()
        if held is not None and _parse(held[0]).get("token") == self.owner["token"]:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _try_create(self) -> bool:
        """Put the lock file in place, already holding its owner (written to a private name, then hard-linked
        to the lock's name, which fails if it exists), so no process ever sees it empty; False if it exists."""
        private = self.path.with_name(f"{LOCK_NAME}.new-{self.owner['token']}")
        try:
            with open(private, "w") as f:
                json.dump(self.owner, f)
            try:
                os.link(private, self.path)
            except FileExistsError:
                return False
            except OSError as e:  # a file system without hard links: exclusive create, then write
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                return self._create_and_write()
            return True
        except OSError as e:
            raise UserError(f"Cannot take the build lock {self.path} of the token cache ({e.strerror or e}); pass a "
                            "writable --data.cache_dir (a cache on a read-only disk is read, not built).") from None
        finally:
            with contextlib.suppress(OSError):
                private.unlink()

    def _create_and_write(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.owner, f)
        return True

    def _read(self) -> Optional[tuple[bytes, int]]:
        try:
            with open(self.path, "rb") as f:
                return f.read(), os.fstat(f.fileno()).st_mtime_ns
        except FileNotFoundError:
            return None

    def _owner_is_gone(self, owner: dict[str, Any]) -> bool:
        if owner.get("host") != self.owner["host"] or not isinstance(owner.get("pid"), int):
            return False
        try:
            os.kill(owner["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _break(self, stale: bytes) -> bool:
        """Remove the stale lock whose content is `stale`; False if another waiter got there first."""
        private = self.path.with_name(f"{LOCK_NAME}.stale-{secrets.token_hex(4)}")
        try:
            os.rename(self.path, private)
        except FileNotFoundError:
            return False
        if private.read_bytes() == stale:
            private.unlink()
            return True
        try:  # we took a fresh lock that replaced the stale one meanwhile: put it back
            os.link(private, self.path)
        except OSError:
            pass
        private.unlink()
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass


def _parse(content: bytes) -> dict[str, Any]:
    try:
        owner = json.loads(content)
        return owner if isinstance(owner, dict) else {}
    except (ValueError, UnicodeDecodeError):
        return {}


def _who(owner: dict[str, Any]) -> str:
    if not owner:
        return "a process killed before it wrote its name into the lock"
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')}"
