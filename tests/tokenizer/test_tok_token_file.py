"""Token files: streaming encode to a memmap-able array + sidecar, and every check on reading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tok_helpers import EOT, write_text

import tokenizer.token_file as token_file
from tokenizer import Tokenizer, TokenizerError
from tokenizer.token_file import read_token_file, write_token_file


@pytest.fixture()
def corpus(tmp_path, shakespeare_text):
    text = shakespeare_text[:100_000].replace("\n\n", f"\n{EOT}\n", 20) + "  \n\n tail "
    return write_text(tmp_path / "corpus.txt", text), text


def test_write_and_read(small_tokenizer, corpus, tmp_path, monkeypatch):
    path, text = corpus
    monkeypatch.setattr(token_file, "_BLOCK", 3000)  # many blocks, so block cuts are exercised
    out = tmp_path / "corpus.bin"
    sidecar = write_token_file(small_tokenizer, path, out)
    ids = read_token_file(out, small_tokenizer.fingerprint(), vocab_size=1000)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16
    assert ids.tolist() == small_tokenizer.encode(text)
    on_disk = json.loads((tmp_path / "corpus.bin.json").read_text())
    assert on_disk == sidecar
    assert sidecar["num_tokens"] == len(ids) and sidecar["source_bytes"] == len(text.encode())
    assert sidecar["tokenizer_fingerprint"] == small_tokenizer.fingerprint()
    assert sidecar["format"] == "llm_lit.tokens" and sidecar["version"] == 1


def test_uint32_for_big_vocab(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)} | {70_000: b"<big>"}
    tok = Tokenizer(vocab, [], ["<big>"])
    path = write_text(tmp_path / "c.txt", "a<big>b")
    write_token_file(tok, path, tmp_path / "c.bin")
    assert read_token_file(tmp_path / "c.bin").tolist() == [97, 70_000, 98]
    assert read_token_file(tmp_path / "c.bin").dtype == np.uint32


def test_read_checks(small_tokenizer, corpus, tmp_path):
    path, _ = corpus
    out = tmp_path / "c.bin"
    write_token_file(small_tokenizer, path, out)
    with pytest.raises(TokenizerError, match=r"was made by another tokenizer .*; re-encode it with the current tokenizer"):
        read_token_file(out, "0" * 64)
    with pytest.raises(TokenizerError, match=r"holds ids up to 1000 but the model's vocab_size is 500"):
        read_token_file(out, vocab_size=500)
    with open(out, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(TokenizerError, match=r"has \d+ bytes but its sidecar promises \d+ uint16 ids"):
        read_token_file(out)
    (tmp_path / "c.bin.json").unlink()
    with pytest.raises(TokenizerError, match=r"has no sidecar .*; re-create it with `python -m tokenizer encode`"):
        read_token_file(out)
    (tmp_path / "c.bin.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(TokenizerError, match=r"is not an llm_lit.tokens version 1 file"):
        read_token_file(out)


def test_write_errors(small_tokenizer, tmp_path):
    with pytest.raises(TokenizerError, match=r"input file .* does not exist"):
        write_token_file(small_tokenizer, tmp_path / "nope.txt", tmp_path / "o.bin")
    with pytest.raises(TokenizerError, match=r"input file .* is empty"):
        write_token_file(small_tokenizer, write_text(tmp_path / "e.txt", ""), tmp_path / "o.bin")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    with pytest.raises(TokenizerError, match=r"is not UTF-8 text \(bad byte 0xff at byte offset 3, line 2\)"):
        write_token_file(small_tokenizer, bad, tmp_path / "o.bin")
    assert not (tmp_path / "o.bin").exists()  # nothing half-written is left behind
    blocker = write_text(tmp_path / "blocker", "x")
    with pytest.raises(TokenizerError, match=r"cannot write token file .*; choose a path in a writable folder"):
        write_token_file(small_tokenizer, write_text(tmp_path / "ok.txt", "hi"), blocker / "o.bin")
