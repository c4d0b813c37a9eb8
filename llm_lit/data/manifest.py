"""The token cache's manifest: which shards make up each split, where they came from, how they join.

`manifest.json` in a cache folder is written last and atomically, so a folder without one
(or with one that does not parse) holds no cache yet. It records, for each split, its
documents in order; a document is one source file, or the part of one that falls in the
split, and its tokens are one shard:

    {"format": "llm_lit.token_cache", "version": 2, "key": ..., "settings": {...},
     "tokenizer": {"file": "tokenizer.json", "fingerprint": ..., "vocab_size": ..., "size": ..., "mtime_ns": ...},
     "separator": {"between": [256], "before_each": [], "after_each": []},
     "splits": {"train": [{"file": "train-00000-....bin", "num_tokens": ..., "max_id": ..., "dtype": "uint16",
                           "sha256": ..., "source": {"path": "/abs/a.txt", "kind": "text", "start": 0, "end": ...,
                                      "size": ..., "mtime_ns": ..., "sha256": ...}}, ...],
                "val": [...]}}

A shard's `file` is a name inside the cache folder, or the absolute path of a token file
the user gave (`kind: "tokens"`, `start`/`end` counting tokens instead of bytes). The
sha256 of each source range, and of each shard's bytes, is computed once, while it is encoded;
later starts trust size and modification time (see `llm_lit.data.tokens`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tokenizer.atomic import atomic_write

FORMAT = "llm_lit.token_cache"
VERSION = 2
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SeparatorPolicy:
    """Ids placed around the documents of a split when its shards are read as one sequence.

    `between` goes between consecutive documents; `before_each` and `after_each` wrap every
    document (e.g. BOS / EOS ids). Today's policy: the tokenizer's first special token
    (`<|endoftext|>`) between files, nothing around each.
    """

    between: tuple[int, ...] = ()
    before_each: tuple[int, ...] = ()
    after_each: tuple[int, ...] = ()

    def parts(self, documents: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The arrays whose concatenation is the split: documents with the policy's ids around them."""
        ids = {name: np.asarray(getattr(self, name), dtype=np.int64) for name in ("between", "before_each", "after_each")}
        parts: list[np.ndarray] = []
        for i, document in enumerate(documents):
            if i:
                parts.append(ids["between"])
            parts += [ids["before_each"], document, ids["after_each"]]
        return [p for p in parts if len(p)]

    def max_id(self) -> int:
        """The largest id the policy inserts (-1 if none)."""
        return max((*self.between, *self.before_each, *self.after_each), default=-1)

    def to_dict(self) -> dict[str, list[int]]:
        """The JSON form."""
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SeparatorPolicy":
        """Inverse of `to_dict`."""
        return cls(**{k: tuple(int(i) for i in d.get(k, ())) for k in ("between", "before_each", "after_each")})


@dataclass(frozen=True)
class Source:
    """Where a shard's tokens came from: units `[start, end)` of a file, and the file as it was then.

    `kind` is "text" (units are bytes; `sha256` is that of the range), "tokens" (a token
    file the user gave; units are tokens; no hash), "records" (a JSONL / Parquet / Arrow file,
    encoded whole: bytes of the file, `records` documents holding `text_bytes` of text) or
    "stream" (a remote text file, encoded whole). `format` is the file's format, `version` a
    remote object's ETag or content hash (its `sha256` is then that of what was read, if it
    was read in order).
    """

    path: str
    kind: str
    start: int
    end: int
    size: int
    mtime_ns: int
    sha256: Optional[str] = None
    format: Optional[str] = None
    version: Optional[str] = None
    records: Optional[int] = None
    text_bytes: Optional[int] = None

    @property
    def key(self) -> tuple[str, str, int, int]:
        """What identifies the document: file, kind and range (a file encoded whole: the file)."""
        if self.kind in ("records", "stream"):
            return self.path, self.kind, 0, 0
        return self.path, self.kind, self.start, self.end


@dataclass(frozen=True)
class Shard:
    """One document's tokens: a token file (in the cache folder, or the user's) and what it holds.

    `mtime_ns` is the token file's modification time when written (a later change means
    it cannot be trusted); None for the user's token files, whose `source` records it.
    `offset` is where the ids start in the file (a header's bytes). `span` is the part of the
    document's tokens a split reads, when a split cut falls inside it after encoding.
    `sha256` is that of the token file's bytes as written (`verify="full"` compares it); None
    for the user's token files and for shards written before it was recorded.
    """

    file: str
    num_tokens: int
    max_id: int
    dtype: str
    source: Source
    mtime_ns: Optional[int] = None
    offset: int = 0
    span: Optional[tuple[int, int]] = None
    sha256: Optional[str] = None

    def path(self, folder: Path) -> Path:
        """The token file's path (names are relative to the cache folder)."""
        return folder / self.file

    def open(self, folder: Path) -> np.ndarray:
        """The document's ids `(length,)` as a read-only memmap: the source's token range of a token file,
        else all of the file, then the `span`."""
        if self.num_tokens == 0:
            return np.empty(0, dtype=np.dtype(self.dtype))
        tokens = np.memmap(self.path(folder), dtype=np.dtype(self.dtype), mode="r", offset=self.offset,
                           shape=(self.num_tokens,))
        if self.source.kind == "tokens":
            tokens = tokens[self.source.start:self.source.end]
        return tokens[self.span[0]:self.span[1]] if self.span is not None else tokens

    @property
    def length(self) -> int:
        """Tokens of the document (its span's, when it has one)."""
        if self.span is not None:
            return self.span[1] - self.span[0]
        return self.source.end - self.source.start if self.source.kind == "tokens" else self.num_tokens


@dataclass(frozen=True)
class Manifest:
    """Everything a cache folder holds; see the module docstring."""

    key: str
    settings: dict[str, Any]
    tokenizer: dict[str, Any]
    separator: SeparatorPolicy
    splits: dict[str, tuple[Shard, ...]]
    built_by: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def num_tokens(self, split: str) -> int:
        """Tokens of a split, separators included."""
        shards, sep = self.splits[split], self.separator
        n = len(shards)
        return sum(s.length for s in shards) + len(sep.between) * max(n - 1, 0) + (len(sep.before_each) + len(sep.after_each)) * n

    def max_id(self) -> int:
        """The largest id of every shard and separator."""
        return max([self.separator.max_id()] + [s.max_id for shards in self.splits.values() for s in shards])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": FORMAT, "version": VERSION, "key": self.key, "settings": self.settings,
            "tokenizer": self.tokenizer, "separator": self.separator.to_dict(),
            "splits": {name: [asdict(s) for s in shards] for name, shards in self.splits.items()},
            "built_by": self.built_by, "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        """Inverse of `to_dict`; ValueError/KeyError/TypeError for anything else."""
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} manifest")
        splits = {name: tuple(_shard(s) for s in shards) for name, shards in d["splits"].items()}
        return cls(d["key"], dict(d["settings"]), dict(d["tokenizer"]), SeparatorPolicy.from_dict(d["separator"]),
                   splits, d.get("built_by", ""), dict(d.get("notes", {})))


def _shard(d: dict[str, Any]) -> Shard:
    span = d.get("span")
    return Shard(**{**d, "source": Source(**d["source"]), "span": tuple(span) if span is not None else None})


def read_manifest(folder: Path) -> Optional[Manifest]:
    """The manifest in `folder`, or None when there is none or it cannot be read."""
    try:
        with open(folder / MANIFEST, encoding="utf-8") as f:
            return Manifest.from_dict(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write `manifest.json` atomically (the cache's commit point)."""
    with atomic_write(folder / MANIFEST) as f:
        json.dump(manifest.to_dict(), f, indent=1)
