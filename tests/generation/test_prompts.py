"""The prompt policy: BOS first, the empty prompt, the context limit, stop tokens."""

from __future__ import annotations

import pytest

from llm_lit.errors import UserError
from llm_lit.generation.prompts import END_OF_TEXT, PromptPolicy
from tokenizer import Tokenizer

BYTES = {i: bytes([i]) for i in range(256)}


def _tokenizer(special: list[str], roles: dict[str, str] | None = None) -> Tokenizer:
    return Tokenizer(BYTES, [], special, roles)


def test_a_prompt_is_its_bytes_after_the_bos_when_there_is_one():
    plain = PromptPolicy(_tokenizer([END_OF_TEXT]), context_length=16)
    assert plain.encode("ab") == [97, 98]
    with_bos = PromptPolicy(_tokenizer(["<s>", "</s>"], {"bos": "<s>", "eos": "</s>"}), context_length=16)
    assert with_bos.encode("ab") == [256, 97, 98]


def test_an_empty_prompt_starts_from_the_bos_else_end_of_text_else_is_refused():
    assert PromptPolicy(_tokenizer(["<s>"], {"bos": "<s>"}), 16).encode("") == [256]
    assert PromptPolicy(_tokenizer([END_OF_TEXT]), 16).encode("") == [256]
    with pytest.raises(UserError, match="empty prompt needs"):
        PromptPolicy(_tokenizer([]), 16).encode("")


def test_a_prompt_longer_than_the_context_is_refused_unless_truncating():
    long = "x" * 20
    with pytest.raises(UserError, match="more than the model's context of 8 tokens.*--model.truncate_prompts true"):
        PromptPolicy(_tokenizer([]), 8).encode(long)
    assert len(PromptPolicy(_tokenizer([]), 8, truncate=True).encode(long)) == 20  # generation keeps the last 8


def test_stop_ids_are_the_named_tokens_else_eos_else_end_of_text():
    roles = _tokenizer(["<s>", "</s>", END_OF_TEXT], {"bos": "<s>", "eos": "</s>"})
    assert PromptPolicy(roles, 16).stop_ids() == [257]
    assert PromptPolicy(roles, 16, stop_tokens=[END_OF_TEXT]).stop_ids() == [258]
    assert PromptPolicy(_tokenizer([END_OF_TEXT]), 16).stop_ids() == [256]
    assert PromptPolicy(_tokenizer([]), 16).stop_ids() == []
    with pytest.raises(UserError, match="--stop_tokens names '<x>', which is not a special token"):
        PromptPolicy(roles, 16, stop_tokens=["<x>"], stop_setting="--stop_tokens").stop_ids()
