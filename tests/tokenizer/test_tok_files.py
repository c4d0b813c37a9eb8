"""Tokenizer files: our JSON (save/load, to_dict, fingerprint), GPT-2 vocab.json/merges.txt, errors."""

from __future__ import annotations

import json
import os

import pytest
from tok_helpers import EOT

from tokenizer import Tokenizer, TokenizerError
from tokenizer.formats import bytes_to_unicode

SAMPLE = f"Hello  world!\n\n It's 12 o'clock{EOT}日本 😀 e\u0301 \t end "


def test_save_load_round_trip(small_tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    small_tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.vocab == small_tokenizer.vocab
    assert loaded.merges == small_tokenizer.merges
    assert loaded.special_tokens == [EOT]
    assert loaded.fingerprint() == small_tokenizer.fingerprint()
    assert loaded.encode(SAMPLE) == small_tokenizer.encode(SAMPLE)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["format"] == "llm_lit.tokenizer" and d["version"] == 1
    assert d["merges"][0].count(" ") == 1  # human-readable "left right"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_to_dict_is_json_and_round_trips(small_tokenizer):
    d = json.loads(json.dumps(small_tokenizer.to_dict()))
    assert Tokenizer.from_dict(d).fingerprint() == small_tokenizer.fingerprint()


def test_fingerprint_changes_with_content(small_tokenizer):
    other = Tokenizer(small_tokenizer.vocab, small_tokenizer.merges[:-1], [EOT])
    assert len(small_tokenizer.fingerprint()) == 64
    assert other.fingerprint() != small_tokenizer.fingerprint()


def test_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def test_gpt2_files_round_trip(small_tokenizer, tmp_path):
    vocab_json, merges_txt = tmp_path / "vocab.json", tmp_path / "merges.txt"
    small_tokenizer.save_gpt2_files(vocab_json, merges_txt)
    assert merges_txt.read_text(encoding="utf-8").startswith("#version: 0.2\n")
    loaded = Tokenizer.from_gpt2_files(vocab_json, merges_txt, [EOT])
    assert loaded.fingerprint() == small_tokenizer.fingerprint()


def test_gpt2_files_read_by_transformers_give_same_ids(small_tokenizer, tmp_path, shakespeare_text):
    transformers = pytest.importorskip("transformers")
    vocab_json, merges_txt = tmp_path / "vocab.json", tmp_path / "merges.txt"
    small_tokenizer.save_gpt2_files(vocab_json, merges_txt)
    hf = transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))  # reads vocab.json + merges.txt there
    text = shakespeare_text[:20_000] + SAMPLE
    assert hf(text)["input_ids"] == small_tokenizer.encode(text)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"format": "other", "version": 1}, r"has format 'other', not 'llm_lit.tokenizer'; pass a file written by Tokenizer.save"),
        ({"format": "llm_lit.tokenizer", "version": 99}, r"is llm_lit.tokenizer version 99 but this code reads version 1; re-save it"),
        ({"model": {}, "added_tokens": []}, r"is a Hugging Face tokenizer.json, not an llm_lit.tokenizer file"),
        ({"format": "llm_lit.tokenizer", "version": 1, "vocab": {}}, r"is damaged \(KeyError"),
        ([1, 2], r"is not a JSON object"),
    ],
)
def test_load_rejects_other_files(tmp_path, content, message):
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.load(path)


def test_load_missing_and_not_json(tmp_path):
    with pytest.raises(TokenizerError, match=r"tokenizer file .*nope.json does not exist; check the path"):
        Tokenizer.load(tmp_path / "nope.json")
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"is not valid JSON .*; pass a file in the right format"):
        Tokenizer.load(path)


def test_save_to_unwritable_path(small_tokenizer, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TokenizerError, match=r"cannot write tokenizer file .*; choose a path in a writable folder"):
        small_tokenizer.save(blocker / "tok.json")  # a "folder" that is a file


def test_bad_gpt2_files(tmp_path):
    vocab_json, merges_txt = tmp_path / "vocab.json", tmp_path / "merges.txt"
    vocab_json.write_text(json.dumps({"a b": 0}), encoding="utf-8")
    merges_txt.write_text("", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"has the token 'a b' with a character \(' '\) that is not in GPT-2's byte table"):
        Tokenizer.from_gpt2_files(vocab_json, merges_txt)
    vocab_json.write_text(json.dumps({bytes_to_unicode()[b]: b for b in range(256)}), encoding="utf-8")
    merges_txt.write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"line 2 of GPT-2 merges file .* is 'a b c', not two tokens"):
        Tokenizer.from_gpt2_files(vocab_json, merges_txt)
    with pytest.raises(TokenizerError, match=r"GPT-2 merges file .*missing.txt does not exist"):
        Tokenizer.from_gpt2_files(vocab_json, tmp_path / "missing.txt")
