"""Special-token roles travel through the Hugging Face export and import."""

from __future__ import annotations

import json

import pytest
from interop_helpers import CORPUS, EOT, make_config, random_model

from llm_lit.interop.export import export_hf
from llm_lit.interop.load import load_hf
from tokenizer import Tokenizer, train_bpe

transformers = pytest.importorskip("transformers")

SPECIALS = [EOT, "<s>", "</s>", "<pad>", "<unk>"]
ROLES = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}


@pytest.fixture(scope="module")
def role_tok() -> Tokenizer:
    vocab, merges = train_bpe(CORPUS, 300, SPECIALS)
    return Tokenizer(vocab, merges, SPECIALS, ROLES)


def test_export_states_the_roles_for_transformers(role_tok, tmp_path):
    model = random_model(make_config("llama", vocab_size=role_tok.vocab_size))
    export_hf(model, role_tok, tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for role, token in ROLES.items():
        assert getattr(theirs, f"{role}_token") == token
        assert getattr(theirs, f"{role}_token_id") == role_tok.role_id(role)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation == {"bos_token_id": role_tok.role_id("bos"), "eos_token_id": role_tok.role_id("eos"),
                          "pad_token_id": role_tok.role_id("pad")}
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert (hf_model.config.eos_token_id, hf_model.config.pad_token_id) == (role_tok.role_id("eos"), role_tok.role_id("pad"))
    text = "ROMEO: <s>hi</s><pad>"
    assert theirs(text)["input_ids"] == role_tok.encode(text)  # no BOS added: ids as ours
    _, back = load_hf(tmp_path / "hf")
    assert back.roles == ROLES


def test_without_roles_the_export_keeps_gpt2s_convention_and_imports_without_roles(tok, tmp_path):
    model = random_model(make_config("gpt2"))
    export_hf(model, tok, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert config["bos_token"] == config["eos_token"] == EOT and "pad_token" not in config
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text()) == {
        "bos_token_id": tok.token_to_id(EOT), "eos_token_id": tok.token_to_id(EOT)}
    _, back = load_hf(tmp_path / "hf")
    assert back.roles == {} and back.fingerprint() == tok.fingerprint()


def test_a_foreign_folder_gives_its_roles(role_tok, tmp_path):
    plain = Tokenizer.from_dict({k: v for k, v in role_tok.to_dict().items() if k != "roles"})
    model = random_model(make_config("llama", vocab_size=plain.vocab_size))
    export_hf(model, plain, tmp_path / "hf")
    path = tmp_path / "hf" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    del config["llm_lit_roles"]  # as transformers' save_pretrained writes it
    config.update(bos_token={"content": "<s>"}, eos_token="</s>", unk_token="<not special>")
    path.write_text(json.dumps(config))
    _, back = load_hf(tmp_path / "hf")
    assert back.roles == {"bos": "<s>", "eos": "</s>"}  # a token that is not special plays no role
