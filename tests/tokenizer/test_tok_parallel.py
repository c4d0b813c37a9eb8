"""Parallel encoding writes the same bytes as one process; `encode_array` equals `encode`; training on
byte ranges and on an evenly spread sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_helpers import EOT, write_text

import tokenizer.token_file as token_file
from tokenizer import Tokenizer, train_bpe
from tokenizer.pretokenize import TextRange, count_pretokens, count_pretokens_in_ranges
from tokenizer.sample import sample_ranges
from tokenizer.token_file import encode_ranges, read_token_file, write_token_file
from tokenizer.train import train_bpe_on_ranges

_PIECES = ["a", "b", "the", " ", "  ", "\n", "\n\n", " \n", "\r\n", "é", "😀", "'s", ".", "1", "\u2019", "\u201c",
           "—", EOT, "<|end", "word\n"]
_TEXT = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=400).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_TEXT, block=st.integers(1, 200), processes=st.sampled_from([1, 1, 1, 2]), data=st.data())
def test_parallel_encoding_of_ranges_equals_one_process_on_the_whole_text(small_tokenizer, tmp_path, monkeypatch,
                                                                          text, block, processes, data):
    """Random texts, random block sizes (so blocks are cut at many exact boundaries), random byte ranges:
    the token files hold exactly the ids of encoding each range's text in one piece."""
    monkeypatch.setattr(token_file, "_BLOCK", block)
    raw = text.encode("utf-8")
    path = tmp_path / "t.txt"
    path.write_bytes(raw)
    cut = data.draw(st.integers(0, len(raw)))
    while cut < len(raw) and (raw[cut] & 0xC0) == 0x80:  # a range starts at a character
        cut += 1
    ranges = [r for r in (TextRange(str(path), 0, cut), TextRange(str(path), cut, len(raw))) if r.size]
    outputs = [tmp_path / f"out{i}-{processes}-{block}.bin" for i in range(len(ranges))]
    sidecars = encode_ranges(small_tokenizer, ranges, outputs, processes=processes)
    for r, out, sidecar in zip(ranges, outputs, sidecars):
        expected = small_tokenizer.encode(raw[r.start:r.end].decode("utf-8"))
        assert read_token_file(out, small_tokenizer.fingerprint()).tolist() == expected
        assert sidecar["max_id"] == max(expected) and sidecar["source_start"] == r.start
        out.unlink()
        (tmp_path / f"{out.name}.json").unlink()


def test_two_processes_write_the_file_one_process_writes(small_tokenizer, shakespeare_path, tmp_path, monkeypatch):
    monkeypatch.setattr(token_file, "_BLOCK", 50_000)  # ~22 blocks over 1.1 MB
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    write_token_file(small_tokenizer, shakespeare_path, one, processes=1)
    sidecar = write_token_file(small_tokenizer, shakespeare_path, two, processes=2)
    assert one.read_bytes() == two.read_bytes()
    assert sidecar["num_tokens"] == len(small_tokenizer.encode(shakespeare_path.read_text()))


@settings(max_examples=60, deadline=None)
@given(text=_TEXT, dtype=st.sampled_from(["uint16", "uint32"]), limit=st.sampled_from([3, 1 << 20]))
def test_encode_array_equals_encode(small_tokenizer, text, dtype, limit):
    tok = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, small_tokenizer.special_tokens)
    tok.cache_limit = limit  # a tiny limit empties the caches in the middle of a text (or between texts)
    for _ in range(3):  # a cold and a warm cache
        ids = tok.encode_array(text, dtype)
        assert ids.dtype == np.dtype(dtype) and ids.tolist() == small_tokenizer.encode(text)


def test_encode_array_refuses_a_dtype_too_narrow(small_tokenizer):
    with pytest.raises(Exception, match="uint8 cannot hold 1000 ids"):
        small_tokenizer.encode_array("hi", "uint8")


def test_ranges_of_separate_files_train_like_their_concatenation_with_a_special_token(tmp_path, shakespeare_text):
    parts = [shakespeare_text[:30_000], shakespeare_text[30_000:55_000], shakespeare_text[55_000:70_000]]
    paths = [write_text(tmp_path / f"p{i}.txt", t) for i, t in enumerate(parts)]
    joined = write_text(tmp_path / "joined.txt", EOT.join(parts))
    ranges = [TextRange.whole(p) for p in paths]
    assert count_pretokens_in_ranges(ranges, [EOT], 2) == count_pretokens(joined, [EOT], 1)
    assert train_bpe_on_ranges(ranges, 400, [EOT], 1) == train_bpe(joined, 400, [EOT], 1)


def test_a_sample_larger_than_the_corpus_is_the_whole_corpus(shakespeare_path):
    whole = [TextRange.whole(shakespeare_path)]
    assert sample_ranges(whole, 10**9, [EOT]) == whole
    vocab, merges = train_bpe_on_ranges(sample_ranges(whole, 10**9, [EOT]), 500, [EOT])
    assert (vocab, merges) == train_bpe(shakespeare_path, 500, [EOT])


def test_a_sample_is_evenly_spread_exact_blocks(tmp_path, shakespeare_path):
    raw = shakespeare_path.read_bytes()
    a, b = write_text(tmp_path / "a.txt", raw[:700_000].decode()), write_text(tmp_path / "b.txt", raw[700_000:].decode())
    ranges = [TextRange.whole(a), TextRange(str(b), 1000, b.stat().st_size)]
    sample = sample_ranges(ranges, 100_000, [EOT], block_bytes=10_000)
    sizes = [r.size for r in sample]
    assert len(sample) == 10 and 100_000 <= sum(sizes) < 110_000 and all(s >= 10_000 for s in sizes)
    assert {r.path for r in sample} == {str(a), str(b)}  # spread over both files
    assert all(r.start >= 1000 for r in sample if r.path == str(b))  # inside the ranges
    for r in sample:  # cut at exact boundaries: a block ends where the whole text has a pre-token boundary
        data = (a if r.path == str(a) else b).read_bytes()
        assert r.end == len(data) or (data[r.end] == 0x0A and data[r.end - 1] not in b" \n")
