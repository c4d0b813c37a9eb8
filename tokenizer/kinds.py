"""Reading a tokenizer of any kind: byte-level BPE (`bpe.BPETokenizer`) or character-level (`char.CharTokenizer`).

Both are saved as our tokenizer JSON; a char file says `"kind": "char"`, and a file without a
kind (every BPE file, including those written before kinds existed) is BPE.

    tok = load_tokenizer("tokenizer.json")        # whichever kind the file holds
    tok = tokenizer_from_dict(checkpoint_section)  # the same for the dict embedded in a checkpoint
"""

from __future__ import annotations

import os
from typing import Any

from . import formats
from .base import BaseTokenizer
from .bpe import BPETokenizer
from .char import CharTokenizer
from .errors import TokenizerError

#: Each kind of tokenizer, as `data.tokenizer_kind` names it, and its class.
TOKENIZER_CLASSES: dict[str, type[BaseTokenizer]] = {cls.kind: cls for cls in (BPETokenizer, CharTokenizer)}
#: The kinds of tokenizer, as `data.tokenizer_kind` names them.
TOKENIZER_KINDS = tuple(TOKENIZER_CLASSES)
#: A tokenizer of any kind (every kind implements `BaseTokenizer`).
AnyTokenizer = BaseTokenizer


def tokenizer_kind(d: Any) -> str:
    """The kind a tokenizer dict holds: its `kind` field, 'bpe' when it has none."""
    kind = d.get("kind", BPETokenizer.kind) if isinstance(d, dict) else BPETokenizer.kind
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"the tokenizer is of kind {kind!r}, which this version does not know (it reads "
                             f"{', '.join(TOKENIZER_KINDS)}); upgrade the tokenizer package.")
    return kind


def tokenizer_from_dict(d: Any, where: str = "tokenizer dict") -> BaseTokenizer:
    """The tokenizer of a dict written by `to_dict` (either kind)."""
    return TOKENIZER_CLASSES[tokenizer_kind(d)].from_dict(d, where)


def load_tokenizer(path: str | os.PathLike) -> BaseTokenizer:
    """The tokenizer saved at `path` (either kind); TokenizerError for a missing or foreign file."""
    return tokenizer_from_dict(formats.read_json(path, "tokenizer file"), where=f"tokenizer file {path}")
