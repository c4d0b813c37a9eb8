"""The numpy batch BPE (`batch_bpe.PairTable`) equals the one-by-one reference, and the cache
that feeds it stays correct across threads, pickling and interrupted encodes."""

from __future__ import annotations

import pickle
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_helpers import EOT

from tokenizer import Tokenizer
from tokenizer.batch_bpe import PairTable
from tokenizer.pretokenize import pretokens


def pair_table(tok: Tokenizer) -> PairTable:
    return PairTable(tok._ranks, tok._merged, tok._byte_ids, tok.vocab_size)


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30), min_size=1, max_size=40))
def test_batch_equals_one_by_one_on_any_words(small_tokenizer, words):
    batch = pair_table(small_tokenizer).encode_many([w.encode() for w in words])
    assert batch == [list(small_tokenizer._encode_piece(w)) for w in words]


def test_batch_equals_one_by_one_on_every_pretoken_of_the_corpus(small_tokenizer, shakespeare_text):
    words = sorted(set(pretokens(shakespeare_text)))
    words += [" " * 300, "ab" * 200, "e" * 51]  # long pre-tokens: many rounds, many equal pairs
    batch = pair_table(small_tokenizer).encode_many([w.encode() for w in words])
    assert batch == [list(small_tokenizer._encode_piece(w)) for w in words]


def test_batch_with_byte_ids_that_are_not_the_bytes(small_tokenizer, shakespeare_text):
    """GPT-2's own files give byte b an id other than b: the batch must map bytes to ids first."""
    order = list(range(small_tokenizer.vocab_size))
    random.Random(0).shuffle(order)
    vocab = {order[i]: token for i, token in small_tokenizer.vocab.items()}
    tok = Tokenizer(vocab, small_tokenizer.merges, [EOT])
    assert tok._byte_ids != list(range(256))
    words = sorted(set(pretokens(shakespeare_text[:100_000])))
    assert pair_table(tok).encode_many([w.encode() for w in words]) == [list(tok._encode_piece(w)) for w in words]


def test_batch_without_merges():
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [])
    assert pair_table(tok).encode_many([b"abc", "é".encode()]) == [[97, 98, 99], [0xC3, 0xA9]]


def test_encode_is_the_same_batched_or_one_by_one(small_tokenizer, shakespeare_text):
    batched, one_by_one = (Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, [EOT]) for _ in range(2))
    batched.batch_min, one_by_one.batch_min = 1, 10**9
    text = shakespeare_text + EOT + shakespeare_text[:1000]
    assert batched.encode(text) == one_by_one.encode(text)
    assert batched.encode(text) == one_by_one.encode(text)  # again, from the cache


def test_threads_sharing_a_tokenizer_get_the_right_ids(small_tokenizer, shakespeare_text):
    texts = [shakespeare_text[i * 50_000 : (i + 1) * 50_000] for i in range(6)]
    expected = [small_tokenizer.encode(t) for t in texts]
    shared = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, [EOT])
    shared.batch_min = 64
    results: dict[int, list[int]] = {}

    def work(i: int) -> None:
        results[i] = shared.encode(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(texts))] == expected


def test_a_tokenizer_pickles_without_its_cache(small_tokenizer, shakespeare_text):
    tok = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, [EOT])
    tok.encode(shakespeare_text[:20_000])
    copy = pickle.loads(pickle.dumps(tok))
    assert len(copy._cache) == 0
    assert copy.encode(shakespeare_text[:30_000]) == tok.encode(shakespeare_text[:30_000])


def test_an_interrupted_encode_leaves_no_empty_entry(small_tokenizer, shakespeare_text, monkeypatch):
    tok = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, [EOT])
    tok.batch_min = 1

    def interrupted(self, words, out=None):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(PairTable, "encode_many", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tok.encode(shakespeare_text[:5000])
    assert all(ids for ids in tok._cache.values())
    assert tok.encode(shakespeare_text[:5000]) == small_tokenizer.encode(shakespeare_text[:5000])
