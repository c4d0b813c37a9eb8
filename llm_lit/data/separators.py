"""How the documents of a split join: the separator policy of a tokenizer, and the ids written in place
of an end-of-text token inside a document so that the documents a file holds are wrapped too."""

from __future__ import annotations

from typing import Optional, Sequence

from llm_lit.data.manifest import SeparatorPolicy
from tokenizer import Tokenizer


def separator_text(special_tokens: Sequence[str]) -> str:
    """What separated files in a concatenated copy of the corpus: the first special token, else a blank line."""
    return special_tokens[0] if special_tokens else "\n\n"


def separator_policy(tok: Tokenizer) -> SeparatorPolicy:
    """How the documents of a split join: wrapped in the tokenizer's BOS and EOS when it has either role,
    else the first special token's id between them (the ids of a blank line without one).

    When the BOS and EOS are the same token (GPT-2's convention) one of it follows each document.
    """
    bos, eos = tok.role_id("bos"), tok.role_id("eos")
    if bos is not None or eos is not None:
        before = (bos,) if bos is not None and bos != eos else ()
        return SeparatorPolicy(before_each=before, after_each=(eos,) if eos is not None else ())
    if tok.special_tokens:
        return SeparatorPolicy(between=(tok.token_to_id(tok.special_tokens[0]),))
    return SeparatorPolicy(between=tuple(tok.encode("\n\n")))


def document_replacements(tok: Tokenizer) -> Optional[dict[int, tuple[int, ...]]]:
    """Ids written as others in a shard so that every document inside a file is wrapped too.

    A file may hold several documents separated by the end-of-text token (the first special
    token). With a BOS or EOS role, each end-of-text id inside the text becomes the EOS and BOS
    that close one document and open the next (`separator_policy` wraps the file's first and
    last); None when nothing changes (no roles, or the end-of-text token is the EOS and there is
    no separate BOS).
    """
    policy = separator_policy(tok)
    if not tok.special_tokens or policy.between:
        return None
    end_of_text = tok.token_to_id(tok.special_tokens[0])
    replacement = policy.after_each + policy.before_each
    return None if replacement == (end_of_text,) else {end_of_text: replacement}
