"""Fault injection for every file the project writes: a write that fails midway (full disk) or a process
killed between write and rename leaves the previous good file (or none) and no partial file; a token
cache that cannot be trusted is detected and rebuilt."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import cli_env
from disk_full import disk_full_after
from llm_lit.training.callbacks import PredictionWriter
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError
from llm_lit.run.checkpoint_io import AtomicCheckpointIO
from tokenizer import Tokenizer, train_bpe
from tokenizer.errors import TokenizerError
from tokenizer.token_file import read_token_file, write_token_file


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 5}, path)
    good = path.read_bytes()

    def torch_save_filling_the_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", torch_save_filling_the_disk)
    with pytest.raises(UserError, match=r"Cannot write the checkpoint '.*last.ckpt' \(No space left on device\); "
                                        r"free some space \(the previous checkpoint is intact\)"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 10}, path)
    assert path.read_bytes() == good and not _leftovers(tmp_path)
    assert io.load_checkpoint(path)["global_step"] == 5


def test_checkpoint_killed_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path):
    """A real SIGKILL after torch.save wrote the temporary file but before the rename."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 5}, path)
    script = (
        "import os, signal, torch\n"
        "from llm_lit.run.checkpoint_io import AtomicCheckpointIO\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"AtomicCheckpointIO().save_checkpoint({{'global_step': 10, 'w': torch.ones(1000)}}, {str(path)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert AtomicCheckpointIO().load_checkpoint(path)["global_step"] == 5
    # the orphaned temporary file is hidden and never mistaken for a checkpoint by `--ckpt_path last`
    assert all(p.name.startswith(".last.ckpt.") and p.suffix == ".tmp" for p in tmp_path.iterdir() if p != path)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("tok")
    (folder / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    vocab, merges = train_bpe(folder / "c.txt", 270, special_tokens=["<|endoftext|>"])
    return Tokenizer(vocab, merges, ["<|endoftext|>"])


def test_tokenizer_save_on_a_full_disk_keeps_the_previous_file(tokenizer, tmp_path, monkeypatch):
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    good = path.read_bytes()
    other = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    disk_full_after(100, monkeypatch)
    with pytest.raises(TokenizerError, match="No space left on device"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good and not _leftovers(tmp_path)


def test_token_file_on_a_full_disk_keeps_the_previous_file_and_sidecar(tokenizer, tmp_path, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_bytes(BUNDLED_CORPUS.read_bytes()[:20_000])
    out = tmp_path / "t.bin"
    write_token_file(tokenizer, text, out)
    good, good_sidecar = out.read_bytes(), Path(f"{out}.json").read_bytes()
    text.write_bytes(BUNDLED_CORPUS.read_bytes()[:40_000])
    def fsync_reporting_a_full_disk(fd):  # where delayed-allocation file systems report ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync_reporting_a_full_disk)
    with pytest.raises(TokenizerError, match=r"cannot write token file .*No space left on device"):
        write_token_file(tokenizer, text, out)
    monkeypatch.undo()
    assert out.read_bytes() == good and Path(f"{out}.json").read_bytes() == good_sidecar
    assert not _leftovers(tmp_path)
    assert len(read_token_file(out, tokenizer.fingerprint())) == len(good) // 2


def test_predictions_on_a_full_disk_keep_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "preds.jsonl"
    path.write_text('{"prompt": "a", "completion": "b", "num_tokens": 1}\n')
    writer = PredictionWriter(path, echo=False)
    writer._rows = [{"prompt": "x" * 500, "completion": "y" * 500, "num_tokens": 9}] * 10

    class OneRank:
        world_size, global_rank, is_global_zero = 1, 0, True

    disk_full_after(2000, monkeypatch)
    with pytest.raises(OSError):
        writer.on_predict_end(OneRank(), None)
    monkeypatch.undo()
    assert json.loads(path.read_text())["prompt"] == "a" and not _leftovers(tmp_path)


def _cache(tmp_path: Path, tokenizer: Tokenizer):
    corpus = tmp_path / "c.txt"
    if not corpus.exists():
        corpus.write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    return prepare_token_cache([corpus], None, 0.1, 270, ["<|endoftext|>"], tmp_path / "cache", tokenizer=tokenizer)


@pytest.mark.parametrize("damage", ["truncate", "drop_sidecar", "corrupt_sidecar", "other_tokenizer", "bad_ids"])
def test_an_untrustworthy_token_cache_is_detected_and_rebuilt(tokenizer, tmp_path, damage):
    cache = _cache(tmp_path, tokenizer)
    (shard,) = cache.shard_paths("train")
    good = shard.read_bytes()
    sidecar = Path(f"{shard}.json")
    if damage == "truncate":  # e.g. killed while copying the cache, or a full disk
        shard.write_bytes(good[: len(good) // 2])
        with pytest.raises(TokenizerError, match=r"has \d+ bytes but its sidecar promises"):
            read_token_file(shard, tokenizer.fingerprint())
    elif damage == "drop_sidecar":
        sidecar.unlink()
        with pytest.raises(TokenizerError, match="has no sidecar"):
            read_token_file(shard, tokenizer.fingerprint())
    elif damage == "corrupt_sidecar":
        sidecar.write_text('{"format": "llm_lit.tok')
        with pytest.raises(TokenizerError, match="not valid JSON"):
            read_token_file(shard, tokenizer.fingerprint())
    elif damage == "other_tokenizer":
        meta = json.loads(sidecar.read_text())
        meta["tokenizer_fingerprint"] = "0" * 64
        sidecar.write_text(json.dumps(meta))
        with pytest.raises(TokenizerError, match="made by another tokenizer"):
            read_token_file(shard, tokenizer.fingerprint())
    else:  # ids beyond the vocabulary, same size, with a sidecar that does not say so
        ids = np.frombuffer(good, dtype=np.uint16).copy()
        ids[7] = 60_000
        shard.write_bytes(ids.tobytes())
    rebuilt = _cache(tmp_path, tokenizer)
    (new,) = rebuilt.shard_paths("train")
    assert new.read_bytes() == good and not shard.exists()  # a fresh shard; the damaged one is gone
    assert rebuilt.shard_paths("val") == cache.shard_paths("val")  # the intact shard is kept
    assert rebuilt.split("train").tolist() == np.frombuffer(good, dtype=np.uint16).tolist()


def test_a_cache_recording_ids_beyond_the_vocabulary_is_rebuilt_not_refused(tokenizer, tmp_path):
    # the README's promise: out-of-range ids inside the cache are rebuilt automatically (the run used to stop
    # and ask for the folder to be deleted); here only the manifest knows, the shard's stat is unchanged
    from llm_lit.data import TextDataModule

    cache = _cache(tmp_path, tokenizer)
    expected = cache.split("train").tolist()
    (old_shard,) = cache.shard_paths("train")
    manifest_path = cache.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["train"][0]["max_id"] = 60_000
    manifest_path.write_text(json.dumps(manifest))
    tokenizer.save(tmp_path / "tok.json")
    data = TextDataModule(train_files=[str(tmp_path / "c.txt")], val_fraction=0.1, context_length=16,
                          tokenizer_path=str(tmp_path / "tok.json"), cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    data.setup("fit")
    assert data.cache.shard_paths("train") != [old_shard] and not old_shard.exists()  # re-encoded
    assert data.cache.manifest.max_id() < tokenizer.vocab_size
    assert data.train_tokens.tolist() == expected


def test_a_given_token_file_with_ids_beyond_the_vocabulary_is_one_line_naming_it(tokenizer, tmp_path):
    from llm_lit.data import TextDataModule

    (tmp_path / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    write_token_file(tokenizer, tmp_path / "c.txt", tmp_path / "c.bin")
    sidecar = json.loads((tmp_path / "c.bin.json").read_text())
    sidecar["max_id"] = 60_000  # what its sidecar says about ids it holds
    (tmp_path / "c.bin.json").write_text(json.dumps(sidecar))
    tokenizer.save(tmp_path / "tok.json")
    data = TextDataModule(train_files=[str(tmp_path / "c.bin")], context_length=16, cache_dir=str(tmp_path / "cache"),
                          tokenizer_path=str(tmp_path / "tok.json"))
    data.prepare_data()
    with pytest.raises(UserError, match=rf"The token file '{tmp_path / 'c.bin'}' holds ids beyond the tokenizer's"):
        data.setup("fit")
