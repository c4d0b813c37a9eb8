"""Tokenizer: round trips, special tokens, streaming, and identical ids to HF tokenizers and tiktoken."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_helpers import EOT

from tokenizer import Tokenizer, TokenizerError
from tokenizer.pretokenize import GPT2_PATTERN

TRICKY = [
    "",
    " ",
    "\n",
    "   \n\n \t  ",
    "Hello, world! It's 2024; they'll've 12,345 items.",
    "日本語のテキスト、中文字符 한국어",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "cafe\u0301 e\u0300\u0301\u0302 Z\u0351\u0362a",
    f"{EOT}",
    f"a{EOT}b{EOT}{EOT}  c \n{EOT}\n",
    "<|endoftext|",
    "<|endoftext|><|endoftext",
    "line one  \n  line two\n\n\n   \tlast   ",
    "\x00\x01\x7f\u200b\ufeff\u2028",
]

# Arbitrary Unicode mixed with pieces that stress the splitter: whitespace, emoji, CJK,
# combining marks, contractions and the special token itself.
unicode_text = st.lists(
    st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
        st.sampled_from([" ", "  ", "\n", "\t", "😀", "語", "\u0301", "'s", EOT, "<|", "|>"]),
    ),
    max_size=20,
).map("".join)


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_tricky(small_tokenizer, text):
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(text=unicode_text)
def test_round_trip_any_unicode(small_tokenizer, text):
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text


def test_special_tokens_longest_first():
    vocab = {i: bytes([i]) for i in range(256)}
    double = EOT + EOT
    tok = Tokenizer(vocab, [], [EOT, double])
    eot, eot2 = tok.token_to_id(EOT), tok.token_to_id(double)
    assert tok.encode(EOT + EOT + EOT) == [eot2, eot]
    assert tok.encode("a" + EOT) == [97, eot]
    assert tok.token_to_id("<|nope|>") is None
    assert tok.special_tokens == [EOT, double]
    assert tok.decode([eot2]) == double


def test_ids_layout(small_tokenizer):
    assert small_tokenizer.vocab_size == 1000
    assert small_tokenizer.token_to_id(EOT) == 256
    assert small_tokenizer.encode("a") == [97]


def test_decode_replaces_invalid_utf8(small_tokenizer):
    # 0xE6 0x97 starts a 3-byte character that never ends.
    assert small_tokenizer.decode([0xE6, 0x97, 104, 105]) == "\ufffdhi"
    assert small_tokenizer.decode([0xFF]) == "\ufffd"
    assert small_tokenizer.decode([]) == ""


@pytest.mark.parametrize("bad", [1000, -1, 10**9, "5", 2.5, None])
def test_decode_bad_id(small_tokenizer, bad):
    with pytest.raises(TokenizerError, match=rf"token id {bad!r} is not in the vocabulary \(ids 0..999\); decode only ids"):
        small_tokenizer.decode([1, bad])


def test_decode_numpy_ids(small_tokenizer):
    np = pytest.importorskip("numpy")
    ids = small_tokenizer.encode("Hello there")
    assert small_tokenizer.decode(np.array(ids, dtype=np.uint16)) == "Hello there"


def test_encode_rejects_bytes(small_tokenizer):
    with pytest.raises(TokenizerError, match=r"encode takes a str, got bytes"):
        small_tokenizer.encode(b"abc")


def test_encode_iterable_equals_encode_on_file(small_tokenizer, shakespeare_text, monkeypatch):
    text = shakespeare_text[:200_000].replace("\n\n", f"\n{EOT}\n", 30) + "\n  \n tail  "
    monkeypatch.setattr(Tokenizer, "stream_buffer", 1000)  # flush often, so many cuts are exercised
    assert list(small_tokenizer.encode_iterable(io.StringIO(text))) == small_tokenizer.encode(text)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.text(alphabet=" \n\r\ta'é😀<|>endoftx", max_size=12), max_size=40))
def test_encode_iterable_equals_encode_on_any_split(parts):
    vocab = {i: bytes([i]) for i in range(256)} | {256: b" a", 257: b"\n\n"}
    tok = Tokenizer(vocab, [(b" ", b"a"), (b"\n", b"\n")], [EOT, "<|>"])
    tok.stream_buffer = 3
    assert list(tok.encode_iterable(parts)) == tok.encode("".join(parts))


def test_cache_is_bounded(small_tokenizer, monkeypatch):
    tok = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges, [EOT])
    tok._cache._limit = 10
    text = " ".join(f"w{i}" for i in range(100))
    assert tok.encode(text) == small_tokenizer.encode(text)
    assert len(tok._cache) <= 10


def test_same_ids_as_hf_tokenizers_from_save_hf(small_tokenizer, shakespeare_text, tmp_path):
    hf_tokenizers = pytest.importorskip("tokenizers")
    path = tmp_path / "tokenizer.json"
    small_tokenizer.save_hf(path)
    hf = hf_tokenizers.Tokenizer.from_file(str(path))
    for text in TRICKY:
        assert hf.encode(text).ids == small_tokenizer.encode(text), text
    assert hf.encode(shakespeare_text).ids == small_tokenizer.encode(shakespeare_text)
    ids = small_tokenizer.encode(TRICKY[9])
    assert hf.decode(ids, skip_special_tokens=False) == small_tokenizer.decode(ids)


def test_same_ids_as_tiktoken(small_tokenizer, shakespeare_text):
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {t: i for i, t in small_tokenizer.vocab.items() if i != 256}
    enc = tiktoken.Encoding(name="ours", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 256})
    text = shakespeare_text[:300_000]
    assert enc.encode_ordinary(text) == small_tokenizer.encode(text)


def test_bad_vocab_and_merges():
    with pytest.raises(TokenizerError, match=r"lacks 1 of the 256 single-byte tokens \(e.g. byte 7\)"):
        Tokenizer({i: bytes([i]) for i in range(256) if i != 7}, [])
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(TokenizerError, match=r"merge 0 \(b'a', b'b'\) uses or makes a token that is not in the vocabulary"):
        Tokenizer(vocab, [(b"a", b"b")])
    with pytest.raises(TokenizerError, match=r"vocab must be a dict"):
        Tokenizer([b"a"], [])
    with pytest.raises(TokenizerError, match=r"is not a non-negative int id -> bytes"):
        Tokenizer({**vocab, -1: b"x"}, [])
    with pytest.raises(TokenizerError, match=r"must be a list of strings"):
        Tokenizer(vocab, [], EOT)


def test_gpt2_style_vocab_with_shuffled_byte_ids():
    # GPT-2 files do not give byte b the id b; encoding must still work through the vocab.
    order = list(range(255, -1, -1))
    vocab = {i: bytes([b]) for i, b in enumerate(order)}
    vocab[256] = b"ab"
    tok = Tokenizer(vocab, [(b"a", b"b")])
    assert tok.encode("abc") == [256, 255 - ord("c")]
    assert tok.decode(tok.encode("abc xyz")) == "abc xyz"
