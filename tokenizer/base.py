"""`BaseTokenizer`: the interface every tokenizer of this package implements, and what they share.

    tok = BPETokenizer.train([TextRange.whole("corpus.txt")], ["<|endoftext|>"], vocab_size=10_000)
    tok = CharTokenizer.train([TextRange.whole("corpus.txt")], ["<|endoftext|>"])
    ids = tok.encode("ROMEO:");  tok.decode(ids) == "ROMEO:"
    tok.save("tok.json");  type(tok).load("tok.json");  tokenizer.load_tokenizer("tok.json")  # either kind

A tokenizer maps text to ids `0..vocab_size - 1` and back. Its special tokens (e.g. `END_OF_TEXT`)
are never split; some of them may play a role (BOS, EOS, PAD, UNK: `roles.SpecialTokenRoles`).
`vocab` gives each id's UTF-8 bytes, which is what bits per byte counts. Every tokenizer is saved
as our tokenizer JSON (`to_dict`), whose `fingerprint` identifies its ids: equal fingerprints,
equal ids for every text. A subclass names its `kind` and implements the abstract methods; the
file format, the fingerprint, saving and loading are written here once.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Sequence

from .atomic import write_text
from .formats import read_json
from .roles import SpecialTokenRoles

if TYPE_CHECKING:
    import numpy as np

    from .pretokenize import TextRange

#: The special token that separates documents (GPT-2's); the default special token of a trained tokenizer.
END_OF_TEXT = "<|endoftext|>"


class BaseTokenizer(SpecialTokenRoles, ABC):
    """A tokenizer: `encode(str) -> list[int]`, `decode(list[int]) -> str`, saved as one JSON file.

    Subclasses: `bpe.BPETokenizer` (byte-level BPE) and `char.CharTokenizer` (one id per character).
    """

    #: The tokenizer's kind, as `data.tokenizer_kind` and (for kinds other than 'bpe') its file name it.
    kind: ClassVar[str]
    _fingerprint: "str | None" = None

    # ------------------------------------------------------------ building
    @classmethod
    @abstractmethod
    def train(cls, ranges: Sequence["TextRange"], special_tokens: Sequence[str] | None = None, **options: Any
              ) -> "BaseTokenizer":
        """A tokenizer trained on the text of byte ranges of files (`pretokenize.TextRange`), with `special_tokens`;
        `options` are the kind's own (a BPE's `vocab_size`, a char tokenizer's `unk_token`, `utf8_errors`, ...)."""

    @classmethod
    @abstractmethod
    def from_dict(cls, d: dict, where: str = "tokenizer dict") -> "BaseTokenizer":
        """The tokenizer of a dict written by `to_dict`; `TokenizerError` naming `where` for a foreign or damaged one."""

    # ------------------------------------------------------------ ids and text
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids (one more than the largest id)."""

    @property
    @abstractmethod
    def vocab(self) -> dict[int, bytes]:
        """id -> the UTF-8 bytes the id stands for (a special token's whole spelling)."""

    @property
    @abstractmethod
    def special_tokens(self) -> list[str]:
        """The special tokens, in the order given."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, shape `(num_tokens,)` as a list."""

    @abstractmethod
    def encode_array(self, text: str, dtype: "np.typing.DTypeLike" = "uint16") -> "np.ndarray":
        """`encode(text)` as a 1-D numpy array of `dtype`, shape `(num_tokens,)`."""

    @abstractmethod
    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of the strings in `iterable` (e.g. an open text file), lazily, in bounded memory."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` (a list, numpy array or tensor)."""

    # ------------------------------------------------------------ files
    @abstractmethod
    def to_dict(self) -> dict:
        """The JSON-able form written to files and embedded in checkpoints (roles included when set)."""

    def fingerprint(self) -> str:
        """sha256 hex digest of the canonical JSON of `to_dict()` less the roles: equal ids, equal fingerprints.

        Roles are left out because they change no id (what a token file holds depends on the ids
        alone). Computed once (a tokenizer never changes after it is built): it costs a JSON dump of
        the whole vocabulary, and every token file's sidecar records it.
        """
        if self._fingerprint is None:
            d = self.to_dict()
            d.pop("roles", None)
            canonical = json.dumps(d, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self._fingerprint = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        return self._fingerprint

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as one human-readable, versioned JSON file (atomically)."""
        write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1), "tokenizer file")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BaseTokenizer":
        """Read a file written by `save`; `TokenizerError` for a missing file or another format, version or kind."""
        return cls.from_dict(read_json(path, "tokenizer file"), where=f"tokenizer file {path}")
