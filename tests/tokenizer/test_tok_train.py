"""train_bpe: a hand-checked example, equality with a naive trainer, determinism, bad input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenizer.pretokenize as pretokenize
from tokenizer import TokenizerError, train_bpe
from tokenizer.train import descending_key

from tok_helpers import EOT, REPO, SHAKESPEARE, naive_train, write_text


def test_hand_checked_example(tmp_path):
    # Pre-tokens: "low" x1, " low" x5, " lower" x1, " newest" x6, " widest" x3.
    # ("e","s") and ("s","t") both occur 9 times (newest 6 + widest 3): the tie goes to the
    # greatest pair, ("s","t"). Then ("e","st") 9. Then ("l","o") and ("o","w") tie at 7
    # (("w","e") fell to 1 once "e" joined "est"): ("o","w") wins.
    text = "low low low low low low lower newest newest newest newest newest newest widest widest widest"
    path = write_text(tmp_path / "c.txt", text)
    vocab, merges = train_bpe(path, 256 + 1 + 4, [EOT])
    assert merges[:3] == [(b"s", b"t"), (b"e", b"st"), (b"o", b"w")]
    assert vocab[256] == EOT.encode()
    assert vocab[257] == b"st" and vocab[258] == b"est"
    assert set(range(256)) <= set(vocab) and all(vocab[i] == bytes([i]) for i in range(256))


def test_ties_use_byte_strings_not_ids(tmp_path):
    # ("a","b") and ("b","c") both occur twice; the greatest pair of byte strings, ("b","c"), wins.
    path = write_text(tmp_path / "c.txt", "abc abc")
    _, merges = train_bpe(path, 257)
    assert merges == [(b"b", b"c")]


def test_descending_key_reverses_order_including_prefixes():
    tokens = [b"", b"a", b"ab", b"abc", b"b", b"\x00", b"a\x00", b"\xff", b"a\xff"]
    assert sorted(tokens, key=descending_key) == sorted(tokens, reverse=True)


@pytest.mark.parametrize(
    "text",
    [
        "aaaa aaa aaaaa a aa",  # overlapping pairs
        "abababab ab abab\n\n  \n x",
        "the cat sat on the mat; the cat's hat. 12345 123 \t\t end  ",
        f"hello{EOT}world{EOT}{EOT} hello  world\n\nhe said 'hello'",
        "日本語のテキスト 日本 日本語 😀😀 😀 café cafe\u0301 naïve",
    ],
)
def test_matches_naive_trainer(tmp_path, text):
    path = write_text(tmp_path / "c.txt", text)
    for vocab_size in (257, 270, 400):
        assert train_bpe(path, vocab_size, [EOT]) == naive_train(text, vocab_size, [EOT])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab c\n'1é😀<|>", min_size=1, max_size=120))
def test_matches_naive_trainer_on_random_text(tmp_path, text):
    path = write_text(tmp_path / "c.txt", text)
    assert train_bpe(path, 300, ["<|>"]) == naive_train(text, 300, ["<|>"])


def test_same_merges_for_any_number_of_processes(tmp_path, monkeypatch, shakespeare_text):
    text = shakespeare_text[:60_000].replace("\n\n", f"\n{EOT}\n", 30)
    path = write_text(tmp_path / "c.txt", text)
    monkeypatch.setattr(pretokenize, "_MIB", 4096)  # chunks of a few KiB, so every count crosses chunks
    results = [train_bpe(path, 450, [EOT], num_processes=n) for n in (1, 2, 4)]
    assert results[0] == results[1] == results[2]
    assert results[0] == naive_train(text, 450, [EOT])


def test_agrees_with_hf_trainer_until_the_first_tie(tmp_path, shakespeare_text):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    from tokenizer.formats import text_to_token

    # HF breaks count ties by its own ids, we by the greatest byte strings; the first ~90 merges have no tie.
    text = shakespeare_text[:300_000]
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train_from_iterator([text], trainer)
    import json

    hf_merges = [tuple(text_to_token(t, "hf") for t in (m.split(" ") if isinstance(m, str) else m)) for m in json.loads(hf.to_str())["model"]["merges"]]
    _, merges = train_bpe(write_text(tmp_path / "c.txt", text), 400, [EOT])
    assert merges[:60] == hf_merges[:60]


def test_stops_early_when_no_pairs_are_left(tmp_path):
    path = write_text(tmp_path / "c.txt", "ab ab")
    vocab, merges = train_bpe(path, 1000)
    assert merges == [(b"a", b"b"), (b" ", b"ab")]
    assert len(vocab) == 258


@pytest.mark.parametrize(
    "vocab_size, specials, message",
    [
        (255, None, r"vocab_size 255 is smaller than the 256 byte tokens plus 0 special token\(s\); use a vocab_size of at least 256"),
        (256, [EOT], r"at least 257"),
        ("1000", None, r"vocab_size must be an integer"),
        (300, EOT, r"must be a list of strings"),
        (300, [""], r"is not a non-empty string"),
        (300, [EOT, EOT], r"is listed twice"),
    ],
)
def test_bad_arguments(tmp_path, vocab_size, specials, message):
    path = write_text(tmp_path / "c.txt", "some text")
    with pytest.raises(TokenizerError, match=message):
        train_bpe(path, vocab_size, specials)


def test_missing_empty_and_folder_corpus(tmp_path):
    with pytest.raises(TokenizerError, match=r"does not exist; pass the path of a UTF-8 text file"):
        train_bpe(tmp_path / "nope.txt", 300)
    with pytest.raises(TokenizerError, match=r"is empty; pass a file with some text in it"):
        train_bpe(write_text(tmp_path / "empty.txt", ""), 300)
    with pytest.raises(TokenizerError, match=r"is a folder"):
        train_bpe(tmp_path, 300)


def test_not_utf8_says_where(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nsecond caf".encode() + "é".encode("latin-1") + b"\nthird\n")
    with pytest.raises(TokenizerError, match=r"is not UTF-8 text \(bad byte 0xe9 at byte offset 21, line 2\); convert it to UTF-8"):
        train_bpe(path, 300)
