"""Roles of special tokens: which special token is the BOS, EOS, PAD or UNK token.

A tokenizer's `roles` maps a role name to one of its special tokens, e.g.
`{"bos": "<s>", "eos": "</s>", "pad": "<pad>"}`. Any tokenizer of this package may carry
roles (the byte-level BPE here, a character tokenizer, ...); they are saved in the
tokenizer file as `"roles": {...}`, and left out of it when there are none, so a
tokenizer without roles writes (and fingerprints) exactly as before roles existed.

What each role means to the code that reads it:

* `bos` (begin of sequence): put before each document when a corpus is encoded, and
  before a prompt, so that generation starts the way training documents started.
* `eos` (end of sequence): put after each document; generating it ends a continuation.
* `pad`: fills the short rows of a batch of uneven prompts; a PAD target is never scored.
* `unk` (unknown): the token that stands for text the vocabulary cannot spell. A
  byte-level BPE spells every byte, so its `encode` never produces it; naming one there
  only records which special token means "unknown" (e.g. the literal `<unk>` of
  wikitext) for tools that ask, such as the Hugging Face export. A tokenizer whose
  vocabulary is closed (characters seen in training) maps unseen text to it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from .errors import TokenizerError

ROLES = ("bos", "eos", "pad", "unk")


def check_roles(roles: Optional[Mapping[str, Any]], special_tokens: Sequence[str]) -> dict[str, str]:
    """`roles` as a plain dict in `ROLES` order, after checking each names a known role and one of `special_tokens`."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise TokenizerError(f"roles must be a dict of role -> special token, got {type(roles).__name__}; "
                             "pass e.g. {'eos': '<|endoftext|>'}.")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise TokenizerError(f"unknown special-token role {unknown[0]!r}; the roles are {', '.join(ROLES)}.")
    checked = {}
    for role in ROLES:
        token = roles.get(role)
        if token is None:
            continue
        if not isinstance(token, str) or token not in special_tokens:
            raise TokenizerError(f"the {role} token {token!r} is not one of the special tokens {list(special_tokens)}; "
                                 "add it to the special tokens.")
        checked[role] = token
    return checked


def roles_from_dict(d: Mapping[str, Any], special_tokens: Sequence[str], where: str = "tokenizer dict") -> dict[str, str]:
    """The roles recorded in a tokenizer file's dict (none when it has no `"roles"` entry)."""
    try:
        return check_roles(d.get("roles"), special_tokens)
    except TokenizerError as e:
        raise TokenizerError(f"{where}: {e}") from None


class SpecialTokenRoles:
    """The special-token and role lookups both tokenizer kinds share; a subclass sets `_special_ids`
    (special token -> id) and `_roles`, and builds its copy with other roles in `_with_role_map`."""

    _special_ids: dict
    _roles: dict

    def token_to_id(self, s: str) -> "int | None":
        """The id of special token `s`, or None if `s` is not a special token."""
        return self._special_ids.get(s)

    @property
    def roles(self) -> dict:
        """A copy of role -> special token, for the roles that are set ('bos', 'eos', 'pad', 'unk')."""
        return dict(self._roles)

    def role_id(self, role: str) -> "int | None":
        """The id of the special token playing `role` ('bos', 'eos', 'pad' or 'unk'), or None when no token does."""
        token = self._roles.get(role)
        return None if token is None else self._special_ids[token]

    def with_roles(self, roles: Mapping[str, Any]):
        """This tokenizer with `roles` set (a None value leaves that role as it is); the same ids."""
        merged = {**self._roles, **{k: v for k, v in roles.items() if v is not None}}
        return self if merged == self._roles else self._with_role_map(merged)

    def _with_role_map(self, roles: dict):
        raise NotImplementedError
