"""Pre-tokenization: exact chunk boundaries and longest-first special-token splitting."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_helpers import EOT, GPT2_SPLIT, write_text

from tokenizer.pretokenize import chunk_boundaries, count_text, pretokens, special_token_regex, split_special


def test_split_special_longest_first():
    pattern = special_token_regex([EOT, EOT + EOT])
    assert list(split_special("a" + EOT * 3 + "b", pattern)) == [("a", False), (EOT * 2, True), (EOT, True), ("b", False)]
    assert list(split_special("", pattern)) == []
    assert list(split_special("x", None)) == [("x", False)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(st.sampled_from(["a", "b", " ", "  ", "\n", "\n\n", " \n", "\r\n", "\r", "é", "😀", "'s", ".", "1", EOT, "<|end"]), max_size=300).map("".join),
    target=st.integers(1, 40),
)
def test_chunks_do_not_change_pretokens(tmp_path, text, target):
    path = write_text(tmp_path / "c.txt", text)
    bounds = chunk_boundaries(path, target, [EOT])
    data = text.encode()
    assert bounds[0] == 0 and bounds[-1] == len(data) and bounds == sorted(set(bounds))
    chunked: Counter = Counter()
    for a, b in zip(bounds, bounds[1:]):
        count_text(data[a:b].decode(), special_token_regex([EOT]), chunked)
    whole: Counter = Counter()
    for piece in text.split(EOT):
        whole.update(GPT2_SPLIT.findall(piece))
    assert chunked == whole


def test_chunks_prefer_special_tokens(tmp_path):
    text = ("word " * 50 + "\n") * 4 + EOT + "tail\n" + "more text\n" * 10
    path = write_text(tmp_path / "c.txt", text)
    bounds = chunk_boundaries(path, 100, [EOT])
    assert text.encode().index(EOT.encode()) in bounds


def test_crlf_files_are_still_chunked(tmp_path):
    text = "a line of text.\r\n" * 100
    bounds = chunk_boundaries(write_text(tmp_path / "c.txt", text), 100, [])
    assert len(bounds) > 10
    assert all(text.encode()[b : b + 2] == b"\r\n" for b in bounds[1:-1])


# Characters where the ASCII fast path and the Unicode pattern could disagree: whitespace
# only one engine counts as whitespace, non-ASCII whitespace next to ASCII whitespace,
# letters and digits outside ASCII, contractions, and control characters.
_MIXED = st.lists(
    st.one_of(
        st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u3000", "\u2028",
                         "a", "Z", "7", "'s", "'ll", "'", ".", "é", "語", "٣", "\u0301", "😀", "x\xa0  y",
                         # plain non-ASCII symbols, which stay on the fast path
                         "\u2019", "\u201c", "\u201d", "\u2014", "\u2026", "\u20ac", "\xab", "\xa9", "\xb0", " \u2019s"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
        st.text(st.characters(max_codepoint=127), max_size=12),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=_MIXED)
def test_pretokens_equal_the_unicode_pattern(text):
    assert pretokens(text) == GPT2_SPLIT.findall(text)


def test_pretokens_cut_only_where_the_whole_text_has_a_boundary():
    # "\xa0  " is one whitespace pre-token before " y": a cut before the first ASCII space
    # would split it, so the fast path must not cut there.
    for text in ["x\xa0  y", "é  \n\nb", "a\u3000 b c", "ascii only 'll do\n\n  ", "\x1c a\x1c\x1cé b", "語 " * 5,
                 "\u201cdon\u2019t\u201d \u2014 \u2019s\u2026  \n\u20ac5 caf\xe9\u2019"]:
        assert pretokens(text) == GPT2_SPLIT.findall(text), text
