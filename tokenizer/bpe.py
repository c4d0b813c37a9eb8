"""`BPETokenizer`: byte-level BPE encode/decode with special tokens, streaming and file I/O.

(`Tokenizer` is its older name, kept as an alias.)

Encoding a text: cut it at special tokens (longest first), split each piece between
them with the GPT-2 regex, and turn each pre-token into ids by applying merges in rank
order (lowest rank first, all occurrences left to right). A pre-token's ids depend only
on the pre-token, so they are cached: in real text a few thousand distinct pre-tokens
make up most of it, and encoding is then mostly the regex plus dict lookups. The
pre-tokens a text brings that the cache has not seen go through BPE together at the end
of its lookup pass, in one numpy batch when there are many (`batch_bpe.py`).
"""

from __future__ import annotations

import gc
import json
import os
import threading
from contextlib import contextmanager
from itertools import chain, repeat
from typing import Iterable, Iterator, Mapping, Sequence

import regex

from . import formats
from .atomic import write_text
from .base import BaseTokenizer
from .errors import TokenizerError
from .pretokenize import TextRange, crosses_special, pretokens, special_token_regex, split_special
from .roles import check_roles, roles_from_dict
from .train import train_bpe_on_ranges

_SPACE = regex.compile(r"\s")


class _PieceCache(dict):
    """pre-token (str) -> list of its ids, emptied when it grows past `limit`.

    A pre-token seen for the first time gets an empty list and stays `pending` until the
    caller has filled the list and calls `settle`, so that all new pre-tokens of a text go
    through BPE together; `forget_pending` drops them after an error, so that no empty list
    is ever reused.
    """

    def __init__(self, limit: int):
        super().__init__()
        self._limit = limit
        self._new_pieces: list[str] = []
        self._new_ids: list[list[int]] = []

    def __missing__(self, piece: str) -> list[int]:
        if len(self) >= self._limit:
            self.clear()  # keeps memory bounded on endless streams of new pre-tokens
        ids: list[int] = []
        self[piece] = ids
        self._new_pieces.append(piece)
        self._new_ids.append(ids)
        return ids

    def pending(self) -> tuple[list[str], list[list[int]]]:
        """The pre-tokens added since the last `settle`, and their lists of ids to fill."""
        return self._new_pieces, self._new_ids

    def settle(self) -> None:
        """The pending lists are filled: they are ordinary entries from now on."""
        self._new_pieces, self._new_ids = [], []

    def forget_pending(self) -> None:
        """Drop the pending entries (after an error part-way through a text)."""
        for piece in self._new_pieces:
            self.pop(piece, None)
        self.settle()


class BPETokenizer(BaseTokenizer):
    """A byte-level BPE tokenizer: `encode(str) -> list[int]`, `decode(list[int]) -> str`.

    `vocab` maps ids to token bytes and must contain all 256 single bytes; `merges` are
    pairs of token bytes in rank order, each part and result in `vocab`. Special tokens
    are never split; one not in `vocab` gets the next free id. `roles` names the special
    tokens that act as BOS / EOS / PAD / UNK (see `roles.py`).
    """

    kind = "bpe"
    #: Most distinct pre-tokens kept in the encode cache before it is emptied.
    cache_limit = 1 << 20
    #: Fewest new pre-tokens worth BPE in one numpy batch; fewer go one by one.
    batch_min = 512
    #: Characters `encode_iterable` gathers before it encodes what is safe to encode.
    stream_buffer = 1 << 16

    def __init__(self, vocab: dict[int, bytes], merges: Sequence[tuple[bytes, bytes]], special_tokens: Sequence[str] | None = None,
                 roles: Mapping[str, str] | None = None):
        self._vocab = _checked_vocab(vocab)
        self._merges = [(bytes(a), bytes(b)) for a, b in merges]
        self._special_ids = self._add_special_tokens(special_tokens)
        self._roles = check_roles(roles, list(self._special_ids))
        special_ids = set(self._special_ids.values())
        # bytes -> id for ordinary tokens; the lowest id wins if two share bytes.
        self._ids = {}
        for i, token in sorted(self._vocab.items(), reverse=True):
            if i not in special_ids:
                self._ids[token] = i
        missing = [b for b in range(256) if bytes([b]) not in self._ids]
        if missing:
            raise TokenizerError(
                f"the vocabulary lacks {len(missing)} of the 256 single-byte tokens (e.g. byte {missing[0]}); "
                "a byte-level BPE vocab must contain every byte."
            )
        self._byte_ids = [self._ids[bytes([b])] for b in range(256)]
        self._bytes_are_ids = self._byte_ids == list(range(256))
        self._ranks: dict[tuple[int, int], int] = {}
        self._merged: dict[tuple[int, int], int] = {}
        for rank, (a, b) in enumerate(self._merges):
            try:
                pair, merged = (self._ids[a], self._ids[b]), self._ids[a + b]
            except KeyError:
                raise TokenizerError(
                    f"merge {rank} ({a!r}, {b!r}) uses or makes a token that is not in the vocabulary; "
                    "pass the vocab and merges of one tokenizer."
                ) from None
            if pair not in self._ranks:
                self._ranks[pair] = rank
                self._merged[pair] = merged
        self._special_re = special_token_regex(list(self._special_ids))
        self._cache = _PieceCache(self.cache_limit)
        self._id_table = None  # an id_table.IdTable, for encode_array
        self._pair_table = None  # a batch_bpe.PairTable, built on the first large batch
        # Held from a text's first lookup until its new entries are filled, so that another
        # thread never reads an entry that is still empty.
        self._cache_lock = threading.Lock()
        self._fingerprint: str | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_cache_lock"]
        state["_cache"], state["_pair_table"], state["_id_table"] = _PieceCache(self.cache_limit), None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()

    def _add_special_tokens(self, special_tokens: Sequence[str] | None) -> dict[str, int]:
        if special_tokens is None:
            return {}
        if isinstance(special_tokens, str):
            raise TokenizerError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}; wrap it in a list.")
        by_bytes = {t: i for i, t in sorted(self._vocab.items())}  # the highest id wins
        ids: dict[str, int] = {}
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise TokenizerError(f"special token {s!r} is not a non-empty string; pass special tokens as non-empty strings.")
            token = s.encode("utf-8")
            if token not in by_bytes:
                by_bytes[token] = len(self._vocab) if not self._vocab else max(self._vocab) + 1
                self._vocab[by_bytes[token]] = token
            ids[s] = by_bytes[token]
        return ids

    # ------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """Number of ids (one more than the largest id)."""
        return max(self._vocab) + 1

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens, in the order given."""
        return list(self._special_ids)

    @property
    def vocab(self) -> dict[int, bytes]:
        """A copy of id -> token bytes (special tokens included)."""
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """A copy of the merges, in rank order."""
        return list(self._merges)

    def _with_role_map(self, roles: dict[str, str]) -> "BPETokenizer":
        return BPETokenizer(self._vocab, self._merges, list(self._special_ids), roles)

    @classmethod
    def train(cls, ranges: Sequence[TextRange], special_tokens: Sequence[str] | None = None, *, vocab_size: int,
              roles: Mapping[str, str] | None = None, num_processes: int | None = None, progress: bool = False,
              utf8_errors: str = "strict") -> "BPETokenizer":
        """A tokenizer of `vocab_size` ids trained on byte ranges of text files (`train.train_bpe_on_ranges`)."""
        vocab, merges = train_bpe_on_ranges(ranges, vocab_size, special_tokens, num_processes, progress, utf8_errors)
        return cls(vocab, merges, special_tokens, roles)

    # ------------------------------------------------------------ encode / decode

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, shape `(num_tokens,)` as a list."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode takes a str, got {type(text).__name__}; decode bytes to str first.")
        lookup = self._cache.__getitem__
        with self._cache_lock, _gc_paused():
            try:
                if self._special_re is None:
                    parts = list(map(lookup, pretokens(text)))
                else:
                    parts = []
                    for piece, is_special in split_special(text, self._special_re):
                        if is_special:
                            parts.append((self._special_ids[piece],))
                        else:
                            parts.extend(map(lookup, pretokens(piece)))
                self._fill(*self._cache.pending())
                self._cache.settle()
            except BaseException:
                self._cache.forget_pending()
                raise
        return list(chain.from_iterable(parts))

    def encode_array(self, text: str, dtype: "np.typing.DTypeLike" = "uint16") -> "np.ndarray":
        """`encode(text)` as a 1-D numpy array of `dtype`, shape `(num_tokens,)`.

        Faster than `np.array(encode(text))` on large texts: each distinct pre-token's ids
        sit in a row of an `IdTable`, and the text's ids are gathered by numpy from the list
        of its rows instead of built as Python ints.
        """
        import numpy as np  # imported here for the same reason as in `_fill`

        from .id_table import IdTable

        if not isinstance(text, str):
            raise TokenizerError(f"encode takes a str, got {type(text).__name__}; decode bytes to str first.")
        dtype = np.dtype(dtype)
        if self.vocab_size > np.iinfo(dtype).max + 1:
            raise TokenizerError(f"{dtype.name} cannot hold {self.vocab_size} ids; use a wider dtype such as uint32.")
        if self._id_table is None or len(self._id_table) >= self.cache_limit:
            self._id_table = IdTable()  # (emptied when full, between texts, to bound memory)
        table = self._id_table
        lookup = table.rows.__getitem__
        with self._cache_lock, _gc_paused():
            try:
                if self._special_re is None:
                    rows = list(map(lookup, pretokens(text)))
                else:
                    rows = []
                    for piece, is_special in split_special(text, self._special_re):
                        rows.extend(map(lookup, pretokens(piece)) if not is_special else (lookup(piece),))
                if table.pending:
                    self._fill_rows(table)
            except BaseException:
                table.forget_pending()
                raise
        return table.gather(rows, dtype)

    def _fill_rows(self, table: "IdTable") -> None:
        """Fill the table's pending rows: special tokens with their id, pre-tokens with their BPE ids."""
        pending = table.pending
        id_lists: list[list[int]] = [[] for _ in pending]
        specials = [k for k, piece in enumerate(pending) if piece in self._special_ids]
        for k in specials:
            id_lists[k].append(self._special_ids[pending[k]])
        if specials:  # (rare: a special token's first occurrence)
            ordinary = [k for k in range(len(pending)) if k not in set(specials)]
            self._fill([pending[k] for k in ordinary], [id_lists[k] for k in ordinary])
        else:
            self._fill(pending, id_lists)
        table.fill(id_lists)

    def _fill(self, pieces: list[str], ids: list[list[int]]) -> None:
        """BPE on new pre-tokens: append the ids of `pieces[k]` to the empty list `ids[k]`."""
        if len(pieces) >= self.batch_min:
            if self._pair_table is None:
                # Imported here: numpy starts threads on import, and a process with threads
                # cannot fork its pre-tokenization workers (see pretokenize.pool_start_method).
                from .batch_bpe import PairTable

                self._pair_table = PairTable(self._ranks, self._merged, self._byte_ids, self.vocab_size)
            self._pair_table.encode_many([piece.encode("utf-8") for piece in pieces], ids)
        else:
            for piece, piece_ids in zip(pieces, ids):
                piece_ids += self._encode_piece(piece)

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Ids of the concatenation of the strings in `iterable` (e.g. an open text file), lazily.

        Equal to `encode("".join(iterable))` but in bounded memory: text is gathered until
        `stream_buffer` characters and encoded up to the last line break after a non-space
        character that no special token spans, where pre-tokens cannot change.
        """
        longest = max((len(s) for s in self._special_ids), default=1)
        parts: list[str] = []
        size = 0
        for text in iterable:
            parts.append(text)
            size += len(text)
            if size >= self.stream_buffer:
                buf = "".join(parts)
                cut = self._last_safe_cut(buf, len(buf) - longest + 1)
                if cut > 0:
                    yield from self.encode(buf[:cut])
                    buf = buf[cut:]
                parts, size = [buf], len(buf)
        yield from self.encode("".join(parts))

    def _last_safe_cut(self, text: str, hi: int) -> int:
        """Largest p < hi before a '\\n' (or '\\r\\n') after a non-space character, no special token across p; else 0."""
        specials = list(self._special_ids)
        p = text.rfind("\n", 1, max(hi, 1))
        while p > 0:
            cut = p - 1 if text[p - 1] == "\r" else p  # before the "\r" of a "\r\n"
            if cut > 0 and not _SPACE.match(text, cut - 1) and not crosses_special(text, cut, specials):
                return cut
            p = text.rfind("\n", 1, p)
        return 0

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """BPE on one pre-token: merge the leftmost lowest-rank pair until no pair has a rank.

        Merging the leftmost lowest-rank pair one at a time equals applying the merges in
        order everywhere (a merge's result only ever appears in pairs of higher rank).
        `ranks[i]` is the rank of `(ids[i], ids[i + 1])`; a merge only changes its neighbours.
        """
        data = piece.encode("utf-8")
        ids = list(data) if self._bytes_are_ids else [self._byte_ids[b] for b in data]
        get_rank, merged = self._ranks.get, self._merged
        no_rank = len(self._ranks)
        ranks = list(map(get_rank, zip(ids, ids[1:]), repeat(no_rank)))
        while ranks:
            best = min(ranks)
            if best == no_rank:
                break
            i = ranks.index(best)
            new = merged[ids[i], ids[i + 1]]
            ids[i : i + 2] = (new,)
            del ranks[i]
            if i > 0:
                ranks[i - 1] = get_rank((ids[i - 1], new), no_rank)
            if i < len(ranks):
                ranks[i] = get_rank((new, ids[i + 1]), no_rank)
        return tuple(ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
            ids = ids.tolist()
        try:
            data = b"".join(map(self._vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not (isinstance(i, int) or hasattr(i, "__index__")) or i not in self._vocab)
            raise TokenizerError(
                f"token id {bad!r} is not in the vocabulary (ids 0..{self.vocab_size - 1}); "
                "decode only ids made by this tokenizer."
            ) from None
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict:
        """The JSON-able form (format, version, vocab, merges, special tokens); embedded in checkpoints."""
        d = formats.to_dict(self._vocab, self._merges, list(self._special_ids))
        if self._roles:  # left out when empty: a tokenizer without roles is written as before they existed
            d["roles"] = dict(self._roles)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer dict") -> "BPETokenizer":
        """Inverse of `to_dict`; TokenizerError for another format or version."""
        vocab, merges, special_tokens = formats.from_dict(d, where)
        return cls(vocab, merges, special_tokens, roles_from_dict(d, special_tokens, where))

    @classmethod
    def from_gpt2_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike, special_tokens: Sequence[str] | None = None) -> "BPETokenizer":
        """A tokenizer from GPT-2's `vocab.json` and `merges.txt` (e.g. special_tokens=["<|endoftext|>"])."""
        vocab, merges = formats.read_gpt2_files(vocab_json, merges_txt)
        return cls(vocab, merges, special_tokens)

    def save_gpt2_files(self, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> None:
        """Write `vocab.json` and `merges.txt` in GPT-2's format (atomically)."""
        vocab_text, merges_text = formats.gpt2_files_text(self._vocab, self._merges)
        write_text(vocab_json, vocab_text, "GPT-2 vocab file")
        write_text(merges_txt, merges_text, "GPT-2 merges file")

    def save_hf(self, path: str | os.PathLike) -> None:
        """Write a Hugging Face `tokenizers` tokenizer.json that gives the same ids as this tokenizer."""
        d = formats.hf_tokenizer_json(self._vocab, self._merges, self._special_ids)
        write_text(path, json.dumps(d, ensure_ascii=False, indent=1), "tokenizer.json")

    def __repr__(self) -> str:
        roles = f", roles={self._roles}" if self._roles else ""
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, special_tokens={self.special_tokens}{roles})"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector: a first pass over a large text makes a list per new
    pre-token, and each collection those trigger walks the lists of millions of pre-tokens
    (about 0.4 s of 2.5 s on enwiki_train). Nothing made here forms a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _checked_vocab(vocab: dict[int, bytes]) -> dict[int, bytes]:
    if not isinstance(vocab, dict):
        raise TokenizerError(f"vocab must be a dict of id -> bytes, got {type(vocab).__name__}; pass the vocab from train_bpe.")
    out = {}
    for i, token in vocab.items():
        if isinstance(i, bool) or not isinstance(i, int) or i < 0 or not isinstance(token, (bytes, bytearray)):
            raise TokenizerError(f"vocab entry {i!r}: {token!r} is not a non-negative int id -> bytes; pass the vocab from train_bpe.")
        out[i] = bytes(token)
    return out


#: The older name of `BPETokenizer`, kept so that code written against it keeps working.
Tokenizer = BPETokenizer
