"""Reading a tokenizer of any kind: byte-level BPE (`bpe.Tokenizer`) or character-level (`char.CharTokenizer`).

Both are saved as our tokenizer JSON; a char file says `"kind": "char"`, and a file without a
kind (every BPE file, including those written before kinds existed) is BPE.

    tok = load_tokenizer("tokenizer.json")        # whichever kind the file holds
    tok = tokenizer_from_dict(checkpoint_section)  # the same for the dict embedded in a checkpoint
"""

from __future__ import annotations

import os
from typing import Any, Union

from . import formats
from .bpe import Tokenizer
from .char import KIND as CHAR, CharTokenizer
from .errors import TokenizerError
from .roles import roles_from_dict

#: The kinds of tokenizer, as `data.tokenizer_kind` names them.
TOKENIZER_KINDS = ("bpe", CHAR)
AnyTokenizer = Union[Tokenizer, CharTokenizer]


def tokenizer_kind(d: Any) -> str:
    """The kind a tokenizer dict holds: its `kind` field, 'bpe' when it has none."""
    kind = d.get("kind", "bpe") if isinstance(d, dict) else "bpe"
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"the tokenizer is of kind {kind!r}, which this version does not know (it reads "
                             f"{', '.join(TOKENIZER_KINDS)}); upgrade the tokenizer package.")
    return kind


def tokenizer_from_dict(d: Any, where: str = "tokenizer dict") -> AnyTokenizer:
    """The tokenizer of a dict written by `to_dict` (either kind)."""
    if tokenizer_kind(d) == CHAR:
        return CharTokenizer.from_dict(d, where)
    vocab, merges, special_tokens = formats.from_dict(d, where)
    return Tokenizer(vocab, merges, special_tokens, roles_from_dict(d, special_tokens, where))


def load_tokenizer(path: str | os.PathLike) -> AnyTokenizer:
    """The tokenizer saved at `path` (either kind); TokenizerError for a missing or foreign file."""
    return tokenizer_from_dict(formats.read_json(path, "tokenizer file"), where=f"tokenizer file {path}")
