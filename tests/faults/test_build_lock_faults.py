"""The token cache's build lock: an empty lock file (its owner killed between creating and writing it) is
taken over in seconds, not after the minute a silent remote builder gets, and named as what it is; the lock
is never seen empty; a cache folder on a read-only disk is one line when the cache must be (re)built."""

from __future__ import annotations

import errno
import os
import time

import pytest

from llm_lit.data.build_lock import LOCK_NAME, BuildLock
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError


def test_an_empty_lock_left_by_a_killed_owner_is_taken_over_in_seconds(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"")
    said: list[str] = []
    started = time.monotonic()
    with BuildLock(tmp_path, log=said.append, stale_after_s=60, poll_s=0.1):
        waited = time.monotonic() - started
        assert (tmp_path / LOCK_NAME).read_bytes()  # ours now, with its owner written
    assert waited < 10
    assert said == [f"token cache: the build lock {tmp_path / LOCK_NAME} was left by a process killed before it wrote "
                    "its name into the lock, which is no longer running; taking over."]
    assert not list(tmp_path.iterdir())


def test_the_lock_file_appears_with_its_owner_already_written(tmp_path, monkeypatch):
    seen: list[bytes] = []
    real_link = os.link

    def link_and_look(src, dst, *args, **kwargs):
        real_link(src, dst, *args, **kwargs)
        seen.append(open(dst, "rb").read())

    monkeypatch.setattr(os, "link", link_and_look)
    with BuildLock(tmp_path):
        pass
    assert len(seen) == 1 and b'"pid"' in seen[0]


def test_a_stale_cache_on_a_read_only_disk_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    build = lambda: prepare_token_cache([tmp_path / "c.txt"], None, 0.1, 270, ["<|endoftext|>"],  # noqa: E731
                                        tmp_path / "cache", num_proc=1)
    cache = build()
    os.utime(tmp_path / "c.txt", ns=(0, 0))  # the corpus looks changed: the cache must be checked under the lock
    real_open = open

    def read_only_open(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(cache.folder)) and any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_open)
    with pytest.raises(UserError, match=rf"^Cannot take the build lock {cache.folder / LOCK_NAME} of the token cache "
                                        r"\(Read-only file system\); pass a writable --data.cache_dir"):
        build()
