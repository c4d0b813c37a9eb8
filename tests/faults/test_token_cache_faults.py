"""Bad input and faults of the sharded token cache, one sentence each, nothing half-written left behind:
a full disk or a source changing mid-encode, a builder killed while holding the build lock, token files
without a sidecar, of another tokenizer or whose sidecar disagrees, a script without a main guard, and
num_proc below 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tokenizer.token_file as token_file
from disk_full import disk_full_after
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError
from tokenizer import Tokenizer
from tokenizer.token_file import write_token_file

EOT = "<|endoftext|>"
TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"


def cli_env() -> dict[str, str]:
    """A subprocess environment with this repository importable."""
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")


@pytest.fixture()
def files(tmp_path) -> list[Path]:
    paths = []
    for i, (a, b) in enumerate([(0, 40_000), (40_000, 70_000), (70_000, 80_000)]):
        paths.append(tmp_path / f"f{i}.txt")
        paths[-1].write_text(TEXT[a:b], encoding="utf-8")
    return paths


def _prepare(files, tmp_path, **kwargs):
    return prepare_token_cache([str(files[0]), str(files[1])], [str(files[2])], 0.1, 300, [EOT], tmp_path / "cache",
                               num_proc=1, **kwargs)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_disk_that_fills_mid_encode_leaves_the_cache_as_it_was(files, tmp_path, monkeypatch):
    cache = _prepare(files, tmp_path)
    before = _snapshot(cache.folder)
    files[1].write_text(TEXT[200_000:230_000], encoding="utf-8")  # its shard must be re-encoded
    monkeypatch.setattr(token_file, "_BLOCK", 5_000)  # several writes per shard
    disk_full_after(20_000, monkeypatch)
    with pytest.raises(UserError, match=r"Cannot write the token cache in '.*' \(No space left on device\); free some "
                                        r"space or pass another --data.cache_dir \(the cache is as it was before this run\)"):
        _prepare(files, tmp_path)
    monkeypatch.undo()
    assert _snapshot(cache.folder) == before  # no partial shard, no temporary file, the old manifest


def test_a_source_that_changes_while_it_is_encoded_is_refused(files, tmp_path, monkeypatch):
    real = token_file._encode_block

    def encode_and_append(encoder, task):  # something else writes to the file while it is being encoded
        with open(task[1], "a", encoding="utf-8") as f:
            f.write("more text\n")
        return real(encoder, task)

    monkeypatch.setattr(token_file, "_encode_block", encode_and_append)
    monkeypatch.setattr(token_file, "_BLOCK", 5_000)  # it changes between the reads of one file's blocks
    with pytest.raises(UserError, match=r"A corpus file changed while the token cache was being built \(.*f0.txt changed "
                                        r"while it was being encoded.*\); run again once nothing is writing to it"):
        _prepare(files, tmp_path)
    folder = next((tmp_path / "cache").iterdir())
    assert [p.name for p in folder.iterdir()] == []  # no shard, no tokenizer, no manifest, no lock


def test_a_builder_killed_while_holding_the_lock_is_taken_over(files, tmp_path, capsys):
    """A real SIGKILL of a process in the middle of encoding (a partial shard on disk, the lock held)."""
    script = textwrap.dedent(f"""
        import sys, time
        import tokenizer.token_file as tf
        from llm_lit.data.tokens import prepare_token_cache
        tf._BLOCK = 2_000
        real, calls = tf._encode_block, [0]
        def slow(encoder, task):
            calls[0] += 1
            if calls[0] == 3:
                print("ENCODING", flush=True)
                time.sleep(600)
            return real(encoder, task)
        tf._encode_block = slow
        prepare_token_cache([{str(files[0])!r}, {str(files[1])!r}], [{str(files[2])!r}], 0.1, 300, ["{EOT}"],
                            {str(tmp_path / "cache")!r}, num_proc=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ENCODING"
        folder = next((tmp_path / "cache").iterdir())
        assert (folder / ".build.lock").exists() and list(folder.glob("*.bin"))  # a partial shard
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    cache = _prepare(files, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert f"was left by process {proc.pid}" in err and "which is no longer running; taking over" in err
    fresh = _prepare(files, tmp_path / "fresh")
    for split in ("train", "val"):
        assert cache.split(split).tolist() == fresh.split(split).tolist()
    listed = {s.file for shards in cache.manifest.splits.values() for s in shards}
    assert {p.name for p in folder.glob("*.bin")} == listed and not (folder / ".build.lock").exists()


@pytest.mark.slow
def test_a_waiting_process_opens_what_the_builder_wrote(files, tmp_path, capsys):
    """A second process asks for the cache while the first builds it: it waits, then builds nothing."""
    script = textwrap.dedent(f"""
        import time
        import tokenizer.token_file as tf
        from llm_lit.data.tokens import prepare_token_cache
        real = tf._encode_block
        def slow(encoder, task):
            time.sleep(2)
            return real(encoder, task)
        tf._encode_block = slow
        print("START", flush=True)
        prepare_token_cache([{str(files[0])!r}, {str(files[1])!r}], [{str(files[2])!r}], 0.1, 300, ["{EOT}"],
                            {str(tmp_path / "cache")!r}, num_proc=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "START"
        deadline = time.monotonic() + 120
        while not list((tmp_path / "cache").glob("*/.build.lock")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        cache = _prepare(files, tmp_path, progress=True)
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    err = capsys.readouterr().err
    assert "token cache: waiting for process" in err and "building" not in err.replace("which is building", "")
    assert cache.split("train").tolist() == _prepare(files, tmp_path / "fresh").split("train").tolist()


@pytest.fixture()
def token_files(files, tmp_path):
    tok = Tokenizer.load(_prepare(files, tmp_path / "tok").tokenizer_path)
    (tmp_path / "tok.json").write_text(json.dumps(tok.to_dict()))
    bins = []
    for p in files:
        bins.append(tmp_path / f"{p.stem}.bin")
        write_token_file(tok, p, bins[-1])
    return tok, bins


def _prepare_tokens(train, val, tmp_path, tok):
    return prepare_token_cache([str(p) for p in train], [str(p) for p in val], 0.1, 300, [EOT], tmp_path / "cache",
                               tokenizer=tok, num_proc=1)


def test_a_token_file_without_its_sidecar_is_refused(token_files, tmp_path):
    tok, bins = token_files
    Path(f"{bins[0]}.json").unlink()
    with pytest.raises(UserError, match=r"The training corpus file '.*f0.bin' has no sidecar \(.*f0.bin.json\) and no "
                                        r"llm.c header; if it is a headerless array of token ids \(nanoGPT's prepare.py "
                                        r"writes uint16\), pass --data.token_dtype uint16 \(or uint32\), else re-create "
                                        r"it with `python -m tokenizer encode`"):
        _prepare_tokens(bins[:2], bins[2:], tmp_path, tok)


def test_a_token_file_whose_sidecar_disagrees_is_refused(token_files, tmp_path):
    tok, bins = token_files
    with open(bins[1], "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(UserError, match=r"The training corpus file '.*f1.bin' has \d+ bytes but its sidecar promises "
                                        r"\d+ uint16 ids; re-create it with `python -m tokenizer encode`"):
        _prepare_tokens(bins[:2], bins[2:], tmp_path, tok)


def test_a_token_file_of_another_tokenizer_is_refused(token_files, tmp_path):
    tok, bins = token_files
    other = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    with pytest.raises(UserError, match=r"The token file '.*f0.bin' was written by another tokenizer than "
                                        r"--data.tokenizer_path; re-encode it with that tokenizer"):
        _prepare_tokens(bins[:2], bins[2:], tmp_path, other)
    with pytest.raises(UserError, match=r"The token file '.*f0.bin' can only be used with the tokenizer that wrote it; "
                                        r"pass that tokenizer with --data.tokenizer_path"):
        _prepare_tokens(bins[:2], bins[2:], tmp_path, None)


def test_an_unguarded_script_builds_the_cache_with_worker_processes(tmp_path):
    """`prepare_token_cache` at the top level of a script (no `if __name__ == "__main__":`), with torch's
    threads running: worker processes never re-run the script, so it neither hangs nor fails."""
    corpus = tmp_path / "big.txt"
    corpus.write_text(TEXT * 2, encoding="utf-8")  # 2.2 MB: two counting processes
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import tokenizer.token_file as tf
        from llm_lit.data.tokens import prepare_token_cache
        tf._BLOCK = 200_000  # several encoding blocks, so both workers encode
        cache = prepare_token_cache([{str(corpus)!r}], None, 0.1, 300, ["{EOT}"], {str(tmp_path / "cache")!r}, num_proc=2)
        print("TOKENS", len(cache.split("train")))
    """))
    result = subprocess.run([sys.executable, str(script)], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("TOKENS") == 1
    single = prepare_token_cache([str(corpus)], None, 0.1, 300, [EOT], tmp_path / "single", num_proc=1)
    assert f"TOKENS {len(single.split('train'))}" in result.stdout


def test_num_proc_below_one_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(DEBUG_CONFIG), "--data.num_proc", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("error: num_proc must be a whole number >= 1 (got 0); pass --data.num_proc 1 for no worker "
                   "processes, or leave it unset to use every core.")
