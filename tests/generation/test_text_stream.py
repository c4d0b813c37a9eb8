"""`TextStream`: incremental UTF-8 decoding equals decoding the whole, and no part of a stop string is ever shown."""

from __future__ import annotations

import pytest

from llm_lit.generation.text_stream import TextStream

VOCAB = {i: bytes([i]) for i in range(256)} | {300: "é".encode()[:1], 301: "é".encode()[1:], 302: b"ab"}


def ids(text: str) -> list[int]:
    return list(text.encode())


def feed(stream: TextStream, tokens: list[int]) -> tuple[list[str], bool]:
    shown = []
    for token in tokens:
        piece, stopped = stream.push(token)
        shown.append(piece)
        if stopped:
            return shown, True
    shown.append(stream.finish())
    return shown, False


def test_pieces_join_to_the_whole_decoded_text_even_split_characters():
    tokens = [104, 300, 301, 0xFF, 105, 300]  # 'h', é in two tokens, an invalid byte, 'i', a cut-off character
    shown, stopped = feed(TextStream(VOCAB), tokens)
    whole = b"".join(VOCAB[t] for t in tokens).decode("utf-8", errors="replace")
    assert "".join(shown) == whole == "hé\ufffdi\ufffd" and not stopped
    assert shown[1] == "" and shown[2] == "é"  # the character appears once whole


@pytest.mark.parametrize("stop", [["lo w"], ["xyz", "o w"], ["o"]])
def test_text_is_cut_at_the_first_stop_string_and_never_shows_part_of_it(stop):
    stream = TextStream(VOCAB, stop)
    shown, stopped = feed(stream, ids("hello world, hello"))
    text = "hello world, hello"
    cut = min(text.find(s) for s in stop if s in text)
    assert stopped and "".join(shown) == text[:cut] == stream.text
    assert stream.push(ord("z")) == ("", True)  # after the stop nothing more is shown


def test_held_back_text_is_released_when_it_is_not_a_stop_string():
    stream = TextStream(VOCAB, ["\nUser:"])
    assert stream.push(ord("a")) == ("", False)
    first = [stream.push(t)[0] for t in ids("bcdefgh")]
    assert "".join(first) == "abc"  # five characters held back: the stop string's length less one
    assert stream.push(ord("\n")) == ("d", False)
    assert stream.finish() == "efgh\n" and stream.text == "abcdefgh\n"


def test_a_stop_string_across_tokens_and_unknown_ids():
    stream = TextStream(VOCAB, ["ab!"])
    shown, stopped = feed(stream, [120, 302, 33])  # 'x', 'ab' in one token, '!'
    assert stopped and "".join(shown) == "x"
    assert TextStream(VOCAB).token_text(99999) == "\ufffd" and TextStream(VOCAB).token_text(302) == "ab"
