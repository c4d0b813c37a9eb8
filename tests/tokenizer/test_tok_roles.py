"""Special-token roles (BOS / EOS / PAD / UNK): checked, saved in the tokenizer file, not in the fingerprint."""

from __future__ import annotations

import json

import pytest

from tokenizer import Tokenizer, TokenizerError
from tokenizer.roles import ROLES

SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>"]
ROLE_MAP = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}


def byte_tokenizer(roles=None) -> Tokenizer:  # noqa: ANN001
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], SPECIALS, roles)


def test_roles_give_their_ids():
    tok = byte_tokenizer(ROLE_MAP)
    assert tok.roles == ROLE_MAP
    for role, token in ROLE_MAP.items():
        assert tok.role_id(role) == tok.token_to_id(token)
    assert byte_tokenizer().roles == {} and byte_tokenizer().role_id("eos") is None
    assert set(ROLES) == set(ROLE_MAP)


def test_roles_survive_save_load_and_dicts(tmp_path):
    tok = byte_tokenizer(ROLE_MAP)
    tok.save(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text())["roles"] == ROLE_MAP
    assert Tokenizer.load(tmp_path / "t.json").roles == ROLE_MAP
    assert Tokenizer.from_dict(tok.to_dict()).roles == ROLE_MAP


def test_a_tokenizer_without_roles_is_written_as_before_and_roles_leave_the_fingerprint_alone():
    plain = byte_tokenizer()
    assert "roles" not in plain.to_dict()
    assert byte_tokenizer(ROLE_MAP).fingerprint() == plain.fingerprint()  # same ids


def test_with_roles_keeps_the_ids():
    plain = byte_tokenizer()
    tok = plain.with_roles({"eos": "</s>", "bos": None})
    assert tok.roles == {"eos": "</s>"} and tok.vocab == plain.vocab
    assert tok.with_roles({}) is tok
    assert tok.with_roles({"eos": "<|endoftext|>"}).role_id("eos") == plain.token_to_id("<|endoftext|>")


@pytest.mark.parametrize("roles, message", [
    ({"eos": "<eos>"}, "the eos token '<eos>' is not one of the special tokens"),
    ({"sep": "<s>"}, "unknown special-token role 'sep'; the roles are bos, eos, pad, unk"),
    ("eos", "roles must be a dict of role -> special token"),
])
def test_bad_roles_are_one_sentence(roles, message):
    with pytest.raises(TokenizerError, match=message):
        byte_tokenizer(roles)


def test_a_file_with_a_bad_role_names_the_file(tmp_path):
    d = byte_tokenizer().to_dict()
    d["roles"] = {"pad": "<nope>"}
    (tmp_path / "t.json").write_text(json.dumps(d))
    with pytest.raises(TokenizerError, match=r"tokenizer file .*t\.json: the pad token '<nope>'"):
        Tokenizer.load(tmp_path / "t.json")
