"""`CharTokenizer`: one id per character of a corpus's alphabet, plus special tokens.

The first rung of the classic from-scratch ladder (nanoGPT's `shakespeare_char`): the
vocabulary is the set of distinct characters (Unicode code points) of the corpus, sorted by
code point and numbered 0..n-1 in that order, followed by the special tokens. On
tinyshakespeare that is nanoGPT's 65 characters with nanoGPT's ids, then `<|endoftext|>` as 65.

    tok = CharTokenizer.from_text(open("input.txt").read(), ["<|endoftext|>"])
    tok.decode(tok.encode("ROMEO:")) == "ROMEO:"

Special tokens are found in the text first (longest first) and never split, as in the BPE
tokenizer; the rest is one id per character. A character outside the alphabet is refused
in one sentence, unless the tokenizer has an `unk_token`, a special token that then stands
for every unknown character (the hook special-token roles feed).

It implements `tokenizer.base.BaseTokenizer`, as the BPE tokenizer does, so the token cache,
checkpoints, sampling and export take either. Its file is our tokenizer JSON with
`"kind": "char"` and the characters in id order (`tokenizer.kinds` reads both kinds).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence

from .base import BaseTokenizer
from .errors import TokenizerError
from .formats import FORMAT, VERSION
from .pretokenize import TextRange, crosses_special, decode_utf8, exact_blocks, special_token_regex, split_special
from .roles import check_roles, roles_from_dict

KIND = "char"
_BLOCK = 4 << 20  # bytes of a corpus read at a time when collecting its alphabet


class CharTokenizer(BaseTokenizer):
    """A character-level tokenizer: `encode(str) -> list[int]`, `decode(list[int]) -> str`.

    Args:
        characters: the alphabet (any iterable of single characters; duplicates and order do not
            matter: ids follow code point order).
        special_tokens: tokens never split, with ids after the characters, in the order given.
        unk_token: a special token (added to `special_tokens` when missing) that every character
            outside the alphabet becomes; None refuses such characters.
        roles: the special tokens that act as BOS / EOS / PAD / UNK (see `roles.py`).
    """

    kind = KIND
    #: Characters `encode_iterable` gathers before it encodes what is safe to encode.
    stream_buffer = 1 << 16

    def __init__(self, characters: Iterable[str], special_tokens: Sequence[str] | None = None,
                 unk_token: str | None = None, roles: Mapping[str, str] | None = None) -> None:
        import numpy as np  # imported here, as in bpe.py: importing tokenizer stays light

        chars = sorted(set(characters))
        bad = next((c for c in chars if not isinstance(c, str) or len(c) != 1), None)
        if bad is not None:
            raise TokenizerError(f"the alphabet holds {bad!r}, which is not one character; pass single characters.")
        specials = _checked_specials(special_tokens, unk_token)
        shadowed = next((s for s in specials if s in set(chars)), None)
        if shadowed is not None:
            raise TokenizerError(f"the special token {shadowed!r} is also a character of the alphabet, so text could not "
                                 "say which one it means; use a longer special token.")
        self._chars = chars
        self._special_ids = {s: len(chars) + k for k, s in enumerate(specials)}
        self._unk_token = unk_token
        self._roles = check_roles(roles, specials)
        self._strings = chars + specials  # id -> text
        self._code_points = np.array([ord(c) for c in chars], dtype=np.int64)
        self._special_re = special_token_regex(specials)
        self._fingerprint: str | None = None

    @classmethod
    def from_text(cls, text: str | Iterable[str], special_tokens: Sequence[str] | None = None,
                  unk_token: str | None = None) -> "CharTokenizer":
        """The tokenizer whose alphabet is every character of `text` (a string or an iterable of
        strings), special-token occurrences left out."""
        pieces = [text] if isinstance(text, str) else text
        specials = _checked_specials(special_tokens, unk_token)
        special_re = special_token_regex(specials)
        alphabet: set[str] = set()
        for piece in pieces:
            for part, is_special in split_special(piece, special_re):
                if not is_special:
                    alphabet.update(part)
        return cls(alphabet, specials, unk_token)

    @classmethod
    def train(cls, ranges: Sequence[TextRange], special_tokens: Sequence[str] | None = None, *,
              unk_token: str | None = None, utf8_errors: str = "strict") -> "CharTokenizer":
        """The tokenizer of every character in byte ranges of text files, each read once in blocks."""
        specials = _checked_specials(special_tokens, unk_token)
        return cls.from_text(_read_ranges(ranges, specials, utf8_errors), specials, unk_token)

    @classmethod
    def from_ranges(cls, ranges: Sequence[TextRange], special_tokens: Sequence[str] | None = None,
                    unk_token: str | None = None, utf8_errors: str = "strict") -> "CharTokenizer":
        """`train`, with its options given by position."""
        return cls.train(ranges, special_tokens, unk_token=unk_token, utf8_errors=utf8_errors)

    # ------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """Number of ids: the characters, then the special tokens."""
        return len(self._strings)

    @property
    def characters(self) -> list[str]:
        """The alphabet, in id order (code point order)."""
        return list(self._chars)

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens, in the order given (the unk token among them)."""
        return list(self._special_ids)

    @property
    def unk_token(self) -> str | None:
        """The special token unknown characters become, or None (they are refused)."""
        return self._unk_token

    @property
    def vocab(self) -> dict[int, bytes]:
        """id -> the UTF-8 bytes of its text: a character's 1 to 4 bytes, a special token's whole spelling."""
        return {i: s.encode("utf-8") for i, s in enumerate(self._strings)}

    def _with_role_map(self, roles: dict[str, str]) -> "CharTokenizer":
        return CharTokenizer(self._chars, list(self._special_ids), self._unk_token, roles)

    # ------------------------------------------------------------ encode / decode

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, shape `(num_tokens,)` as a list."""
        return self.encode_array(text, "int64").tolist()

    def encode_array(self, text: str, dtype: "np.typing.DTypeLike" = "uint16") -> "np.ndarray":
        """`encode(text)` as a 1-D numpy array of `dtype`, shape `(num_tokens,)`: each character
        looked up by a binary search of the sorted alphabet, all at once."""
        import numpy as np

        if not isinstance(text, str):
            raise TokenizerError(f"encode takes a str, got {type(text).__name__}; decode bytes to str first.")
        dtype = np.dtype(dtype)
        if self.vocab_size > np.iinfo(dtype).max + 1:
            raise TokenizerError(f"{dtype.name} cannot hold {self.vocab_size} ids; use a wider dtype such as uint32.")
        parts, offset = [], 0
        for piece, is_special in split_special(text, self._special_re):
            if is_special:
                parts.append(np.array([self._special_ids[piece]], dtype=np.int64))
            else:
                parts.append(self._char_ids(piece, offset))
            offset += len(piece)
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return ids.astype(dtype)

    def _char_ids(self, piece: str, offset: int) -> "np.ndarray":
        """Ids `(len(piece),)` of a text without special tokens; `offset` is where it starts in the whole text."""
        import numpy as np

        codes = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        ids = np.searchsorted(self._code_points, codes)
        found = self._code_points[np.minimum(ids, len(self._chars) - 1)] == codes if len(self._chars) else \
            np.zeros(len(codes), dtype=bool)
        if not found.all():
            if self._unk_token is None:
                i = int(np.argmin(found))
                c = piece[i]
                raise TokenizerError(
                    f"the character {c!r} (U+{ord(c):04X}) at position {offset + i} is not in this char tokenizer's "
                    f"alphabet of {len(self._chars)} characters; encode text of the corpus it was built from, or give "
                    "it an unk_token (--data.unk_token) that unknown characters become.")
            ids = np.where(found, ids, self._special_ids[self._unk_token])
        return ids

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of the strings in `iterable` (e.g. an open text file), lazily.

        Equal to `encode("".join(iterable))`: text is gathered until `stream_buffer` characters
        and encoded up to the last position no special token spans.
        """
        longest = max((len(s) for s in self._special_ids), default=1)
        buf = ""
        for text in iterable:
            buf += text
            if len(buf) >= self.stream_buffer:
                cut = len(buf) - longest + 1
                while cut > 0 and crosses_special(buf, cut, list(self._special_ids)):
                    cut -= 1
                yield from self.encode(buf[:cut])
                buf = buf[cut:]
        yield from self.encode(buf)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` (special tokens spelled out)."""
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            ids = ids.tolist()
        ids = list(ids)
        try:
            if any(isinstance(i, bool) or i < 0 for i in ids):
                raise IndexError
            return "".join(self._strings[i] for i in ids)
        except (IndexError, TypeError):
            bad = next(i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size)
            raise TokenizerError(f"token id {bad!r} is not in the vocabulary (ids 0..{self.vocab_size - 1}); "
                                 "decode only ids made by this tokenizer.") from None

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict:
        """The JSON-able form (format, version, kind, characters in id order, special tokens, unk token)."""
        d = {"format": FORMAT, "version": VERSION, "kind": KIND, "special_tokens": list(self._special_ids),
             "unk_token": self._unk_token, "characters": list(self._chars)}
        if self._roles:  # left out when empty, as in the BPE tokenizer's file
            d["roles"] = dict(self._roles)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer dict") -> "CharTokenizer":
        """Inverse of `to_dict`; TokenizerError for another format, version or kind, or a damaged one."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise TokenizerError(f"{where} is not an {FORMAT} file; pass a file written by CharTokenizer.save.")
        if d.get("version") != VERSION:
            raise TokenizerError(f"{where} is {FORMAT} version {d.get('version')!r} but this code reads version "
                                 f"{VERSION}; re-save it with a matching version of the tokenizer package.")
        if d.get("kind") != KIND:
            raise TokenizerError(f"{where} is a {d.get('kind', 'bpe')!r} tokenizer, not a char one; load it with "
                                 "tokenizer.load_tokenizer, which reads every kind.")
        chars, specials, unk = d.get("characters"), d.get("special_tokens"), d.get("unk_token")
        if (not isinstance(chars, list) or chars != sorted(set(chars)) or not isinstance(specials, list)
                or not (unk is None or isinstance(unk, str))):
            raise TokenizerError(f"{where} is damaged (its characters must be a sorted list of distinct characters, "
                                 "its special_tokens a list); re-create it with CharTokenizer.save.")
        return cls(chars, specials, unk, roles_from_dict(d, specials, where))

    def __repr__(self) -> str:
        return (f"CharTokenizer(characters={len(self._chars)}, special_tokens={self.special_tokens}, "
                f"unk_token={self._unk_token!r})")


def _checked_specials(special_tokens: Sequence[str] | None, unk_token: str | None) -> list[str]:
    """The special tokens as a list of distinct non-empty strings, with `unk_token` appended if missing."""
    if isinstance(special_tokens, str):
        raise TokenizerError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}; "
                             "wrap it in a list.")
    specials: list[str] = []
    for s in list(special_tokens or []) + ([unk_token] if unk_token is not None else []):
        if not isinstance(s, str) or not s:
            raise TokenizerError(f"special token {s!r} is not a non-empty string; pass special tokens as non-empty strings.")
        if s not in specials:
            specials.append(s)
    return specials


def _read_ranges(ranges: Sequence[TextRange], specials: list[str], utf8_errors: str) -> Iterator[str]:
    """The text of each byte range, in blocks cut where decoding (and special tokens) can restart."""
    cuts = [s.encode("utf-8") for s in specials]
    for source in ranges:
        with open(source.path, "rb") as f:
            for a, b in exact_blocks(f, source.start, source.end, _BLOCK, cuts):
                f.seek(a)
                yield decode_utf8(f.read(b - a), source.path, a, utf8_errors)
