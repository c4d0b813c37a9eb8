"""Bit rot in a token-cache shard (its ids overwritten in place, size and modification time as before):
`--data.verify full` finds it against the hash recorded when the shard was written and re-encodes it, and
an id beyond the tokenizer met while reading windows names the shard and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from llm_lit.data.datasets import RandomWindows, SequentialWindows
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError


def _build(tmp_path: Path, verify: str = "stat"):
    return prepare_token_cache([tmp_path / "c.txt"], None, 0.1, 270, ["<|endoftext|>"], tmp_path / "cache",
                               num_proc=1, verify=verify)


@pytest.fixture()
def cache(tmp_path):
    (tmp_path / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    return _build(tmp_path)


def _rot(shard: Path, values: list[int], at: int = 100) -> None:
    """Overwrite ids of `shard` in place from token `at`, keeping its size and modification time."""
    before = os.stat(shard)
    ids = np.memmap(shard, dtype=np.uint16, mode="r+")
    ids[at:at + len(values)] = values
    ids.flush()
    del ids
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_every_shard_records_the_hash_of_its_bytes(cache):
    import hashlib

    for shards in cache.manifest.splits.values():
        for shard in shards:
            assert shard.sha256 == hashlib.sha256(shard.path(cache.folder).read_bytes()).hexdigest()


def test_verify_full_re_encodes_a_shard_whose_bytes_changed_in_place(tmp_path, cache):
    shard = cache.shard_paths("train")[0]
    good = shard.read_bytes()
    _rot(shard, [7, 7, 7, 7])  # ids the tokenizer has: nothing else would notice
    assert _build(tmp_path).split("train")[100:104].tolist() == [7, 7, 7, 7]  # stat trusts it, as documented
    rebuilt = _build(tmp_path, verify="full")
    new_shard = rebuilt.shard_paths("train")[0]
    assert new_shard.read_bytes() == good
    assert rebuilt.shard_paths("val") == cache.shard_paths("val")  # the intact shard is kept


def test_an_id_beyond_the_tokenizer_in_a_window_names_the_shard_and_the_fix(tmp_path, cache):
    shard = cache.shard_paths("train")[0]
    _rot(shard, [60_000])
    train = _build(tmp_path).split("train")
    message = (rf"^The token shard '{shard}' holds id 60000 \(at token 100\), beyond the tokenizer's 270 ids: its bytes "
               r"changed after it was written; rebuild it with --data.verify full \(or delete its token cache folder\)\.$")
    with pytest.raises(UserError, match=message):
        SequentialWindows(train, 32, 64).__iter__().__next__()
    windows = RandomWindows(train, 32, 16, seed=0)
    with pytest.raises(UserError, match=message):
        for index in range(2000):  # until a window covers token 100
            windows.batch(index)
