"""CharTokenizer: nanoGPT's ids, round trips of any text of its alphabet, the refusal of other characters
(or their UNK), files of both kinds, streaming, the alphabet of file ranges, and bits-per-byte lengths."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tok_helpers import EOT

from tokenizer import CharTokenizer, Tokenizer, TokenizerError, load_tokenizer, tokenizer_from_dict
from tokenizer import char as char_module
from tokenizer.pretokenize import TextRange

ALPHABET = "abc xyz\n\t.,é語😀\u0301"


@pytest.fixture(scope="module")
def shakespeare_char(shakespeare_text) -> CharTokenizer:
    return CharTokenizer.from_text(shakespeare_text, [EOT])


def test_ids_are_nanogpts_on_shakespeare(shakespeare_text, shakespeare_char):
    # nanoGPT's shakespeare_char/prepare.py: chars = sorted(set(data)); stoi = {ch: i for i, ch in enumerate(chars)}
    chars = sorted(set(shakespeare_text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    assert len(chars) == 65 and shakespeare_char.vocab_size == 66
    assert shakespeare_char.encode(shakespeare_text[:5000]) == [stoi[c] for c in shakespeare_text[:5000]]
    assert shakespeare_char.token_to_id(EOT) == 65
    ids = shakespeare_char.encode_array(shakespeare_text)
    assert ids.dtype == np.uint16 and shakespeare_char.decode(ids) == shakespeare_text


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.one_of(st.text(st.sampled_from(ALPHABET), max_size=10), st.just(EOT)), max_size=12).map("".join))
def test_round_trips_any_text_of_its_alphabet(text):
    tok = CharTokenizer(ALPHABET, [EOT])
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == tok.encode_array(text, "uint32").tolist()
    assert list(tok.encode_iterable(text[i:i + 3] for i in range(0, len(text), 3))) == ids


def test_special_tokens_are_never_split_and_come_after_the_characters():
    tok = CharTokenizer("ab<|>", [EOT, "<|end|>"])
    assert tok.characters == ["<", ">", "a", "b", "|"]
    assert tok.encode(f"a{EOT}<|end|><|b") == [2, 5, 6, 0, 4, 3]
    assert tok.special_tokens == [EOT, "<|end|>"] and tok.token_to_id("a") is None


def test_a_character_outside_the_alphabet_is_refused_in_one_line():
    tok = CharTokenizer("abc", [EOT])
    with pytest.raises(TokenizerError) as e:
        tok.encode("ab" + EOT + "cé")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("the character 'é' (U+00E9) at position 16 is not in this char tokenizer's alphabet of 3 "
                              "characters;") and "unk_token" in message


def test_an_unk_token_stands_for_every_unknown_character():
    tok = CharTokenizer("abc", [EOT], unk_token="<unk>")
    assert tok.special_tokens == [EOT, "<unk>"] and tok.unk_token == "<unk>"
    unk = tok.token_to_id("<unk>")
    assert tok.encode("aé😀b") == [0, unk, unk, 1]
    assert tok.decode(tok.encode("aéb")) == "a<unk>b"
    assert CharTokenizer("abc", ["<unk>", EOT], unk_token="<unk>").special_tokens == ["<unk>", EOT]


@pytest.mark.parametrize("args, message", [
    (("ab", ["a"]), "the special token 'a' is also a character of the alphabet"),
    (("ab", EOT), "special_tokens must be a list of strings"),
    (("ab", [""]), "special token '' is not a non-empty string"),
    ((["ab"], None), "the alphabet holds 'ab', which is not one character"),
])
def test_bad_arguments_are_one_sentence(args, message):
    with pytest.raises(TokenizerError, match=message):
        CharTokenizer(*args)


def test_decode_refuses_ids_outside_the_vocabulary():
    tok = CharTokenizer("ab", [EOT])
    for bad in (3, -1):
        with pytest.raises(TokenizerError, match=rf"token id {bad} is not in the vocabulary \(ids 0..2\)"):
            tok.decode([0, bad])


def test_vocab_holds_each_tokens_utf8_bytes():
    tok = CharTokenizer("aé語😀", [EOT])
    assert [len(tok.vocab[i]) for i in range(tok.vocab_size)] == [1, 2, 3, 4, len(EOT)]


def test_saves_and_loads_and_fingerprints(tmp_path):
    tok = CharTokenizer(ALPHABET, [EOT], unk_token="<unk>")
    tok.save(tmp_path / "char.json")
    saved = json.loads((tmp_path / "char.json").read_text(encoding="utf-8"))
    assert saved["kind"] == "char" and saved["characters"] == tok.characters and saved["unk_token"] == "<unk>"
    for again in (load_tokenizer(tmp_path / "char.json"), CharTokenizer.load(tmp_path / "char.json"),
                  tokenizer_from_dict(tok.to_dict()), pickle.loads(pickle.dumps(tok))):
        assert isinstance(again, CharTokenizer) and again.to_dict() == tok.to_dict()
        assert again.fingerprint() == tok.fingerprint() and again.encode("aé?") == tok.encode("aé?")
    assert CharTokenizer(ALPHABET, [EOT]).fingerprint() != tok.fingerprint()


def test_bpe_files_keep_loading_and_each_reader_names_the_other_kind(tmp_path, small_tokenizer):
    small_tokenizer.save(tmp_path / "bpe.json")
    assert "kind" not in json.loads((tmp_path / "bpe.json").read_text(encoding="utf-8"))  # BPE files are unchanged
    bpe = load_tokenizer(tmp_path / "bpe.json")
    assert isinstance(bpe, Tokenizer) and bpe.fingerprint() == small_tokenizer.fingerprint()
    CharTokenizer("ab").save(tmp_path / "char.json")
    with pytest.raises(TokenizerError, match="is a 'char' tokenizer, not byte-level BPE; load it with "
                                             "tokenizer.load_tokenizer"):
        Tokenizer.load(tmp_path / "char.json")
    with pytest.raises(TokenizerError, match="is a 'bpe' tokenizer, not a char one"):
        CharTokenizer.load(tmp_path / "bpe.json")
    with pytest.raises(TokenizerError, match="of kind 'wordpiece', which this version does not know"):
        tokenizer_from_dict({**CharTokenizer("ab").to_dict(), "kind": "wordpiece"})
    damaged = {**CharTokenizer("ab").to_dict(), "characters": ["b", "a"]}
    with pytest.raises(TokenizerError, match="is damaged"):
        tokenizer_from_dict(damaged)


def test_alphabet_of_file_ranges_equals_that_of_their_text(tmp_path, monkeypatch):
    monkeypatch.setattr(char_module, "_BLOCK", 7)  # blocks far smaller than the text: cuts between characters
    text = ("ab é語 " * 20) + EOT + "😀 <|x|> \n"
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    data = text.encode("utf-8")
    middle = data.index("語".encode()) + 3
    ranges = [TextRange(str(path), 0, middle), TextRange(str(path), middle, len(data))]
    tok = CharTokenizer.from_ranges(ranges, [EOT])
    assert tok.characters == CharTokenizer.from_text(text, [EOT]).characters
    assert "|" in tok.characters and "d" not in tok.characters  # the special token's letters are not text


def test_a_corpus_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(TokenizerError, match="not UTF-8 text"):
        CharTokenizer.from_ranges([TextRange.whole(path)])
    assert "\ufffd" in CharTokenizer.from_ranges([TextRange.whole(path)], utf8_errors="replace").characters
