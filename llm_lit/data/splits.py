"""The corpus files as found on disk, and how they divide into the train and validation splits.

Each split is a list of *documents*: a whole source file, or the part of one that falls in
the split. Nothing is copied: a document is a byte range of a text file (or a token range
of a pre-tokenized `.bin` file), encoded straight into its own shard; a record file (JSONL,
Parquet, Arrow) or a remote text file is encoded whole into one shard, its records
separated inside it.

With no validation files, validation is the last `val_fraction` of the corpus as the
files concatenated with a separator between them would be (the separator's text counts,
as in a concatenated copy), the cut moved back to the start of a UTF-8 character. For
one ASCII file such as tinyshakespeare that is exactly nanoGPT's 90/10 split. A cut that
falls on or inside a separator moves to the end of the file before it, so that neither
split starts or ends with a separator.

Files whose length is not known before they are read (records, remote text), or a mix of
text and token files, are cut after encoding instead: validation is the last `val_fraction`
of their tokens laid end to end (`token_cut`), the shard holding the cut read in part by
each split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from llm_lit.data.formats.locate import Located, locate
from llm_lit.data.formats.names import RECORD_FORMATS
from llm_lit.data.formats.remote import is_remote
from llm_lit.data.formats.token_files import token_layout
from llm_lit.errors import UserError


#: Kinds of input encoded whole into one shard each (their split is cut by tokens afterwards).
WHOLE_FILE_KINDS = ("records", "stream")


@dataclass(frozen=True)
class InputFile:
    """One input file as its metadata says (nothing of it read, except a token file's header or sidecar).

    `kind` is "text" (a local text file: cut into splits by bytes before encoding), "tokens" (ids
    used in place: ours, llm.c's or a headerless array; cut by tokens), "records" (a JSONL, Parquet
    or Arrow file, a document per record) or "stream" (a remote text file); the last two are
    encoded whole and cut by tokens afterwards.
    """

    path: str
    kind: str
    size: int  # bytes on disk
    mtime_ns: int
    length: Optional[int]  # units a split can cut before encoding: bytes of a text file, tokens of a token file
    sidecar: Optional[dict[str, Any]] = None
    format: str = "txt"
    version: Optional[str] = None  # a remote object's ETag or content hash
    offset: int = 0  # token files: bytes before the first id
    dtype: Optional[str] = None  # token files: the ids' dtype
    origin: Optional[str] = None  # token files: "llm_lit", "llm.c" or "headerless"
    text_field: str = "text"  # record files: the column or key of the text

    @property
    def stat(self) -> tuple[int, int]:
        """What decides whether the file changed: size and modification time."""
        return self.size, self.mtime_ns

    @property
    def remote(self) -> bool:
        """Whether it is read through fsspec."""
        return is_remote(self.path)

    @property
    def cut_before_encoding(self) -> bool:
        """Whether its length is known before encoding (text and token files)."""
        return self.length is not None

    def same_as(self, size: int, mtime_ns: int, version: Optional[str]) -> bool:
        """Whether the file is the one recorded with this size, mtime and (remote) version."""
        if self.remote:
            return (self.size, self.version) == (size, version)
        return self.stat == (size, mtime_ns)

    def located(self) -> Located:
        """As `formats.locate` found it."""
        return Located(self.path, self.format, self.size, self.mtime_ns, self.version)


@dataclass(frozen=True)
class Document:
    """Units `[start, end)` of an input file: one document of a split (records: the whole file)."""

    input: InputFile
    start: int
    end: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        """What identifies the document: file, kind and range (as `manifest.Source.key`); a file encoded whole
        is the file, whatever its size now."""
        if self.input.kind in WHOLE_FILE_KINDS:
            return self.input.path, self.input.kind, 0, 0
        return self.input.path, self.input.kind, self.start, self.end

    @classmethod
    def whole(cls, f: InputFile) -> "Document":
        """The whole file (bytes of a record file)."""
        return cls(f, 0, f.length if f.length is not None else f.size)


def inspect_inputs(paths: Sequence[str | os.PathLike], what: str, flag: str = "--data.train_files",
                   token_dtype: Optional[str] = None, text_field: str = "text") -> list[InputFile]:
    """The files the entries name (globs and dataset folders expanded, URLs listed) as `InputFile`s, after
    checking each exists and is not empty (else `UserError`).

    A `.bin` file's sidecar or header is read and checked against its size (`formats.token_files`).
    Nothing else of any file is read.
    """
    if not paths:
        raise UserError(f"No {what} files were given; pass at least one text file.")
    files = [_inspect(located, what, token_dtype, text_field) for entry in paths
             for located in locate(str(entry), what, flag)]
    return files


def _inspect(located: Located, what: str, token_dtype: Optional[str], text_field: str) -> InputFile:
    fmt = located.format
    if located.remote:
        if fmt == "tokens":
            raise UserError(f"The token file '{located.path}' is remote; token files are read in place, so copy it "
                            "to a local disk first.")
        if located.size == 0:
            raise UserError(f"The {what} file '{located.path}' is empty; pass a file with some text in it.")
        kind = "records" if fmt in RECORD_FORMATS else "stream"
        return InputFile(located.path, kind, located.size, located.mtime_ns, None, format=fmt,
                         version=located.version, text_field=text_field)
    if fmt in RECORD_FORMATS:
        return InputFile(located.path, "records", located.size, located.mtime_ns, None, format=fmt,
                         text_field=text_field)
    if fmt != "tokens":
        return InputFile(located.path, "text", located.size, located.mtime_ns, located.size, format=fmt)
    layout = token_layout(Path(located.path), located.size, what, token_dtype)
    return InputFile(located.path, "tokens", located.size, located.mtime_ns, layout.num_tokens, layout.sidecar,
                     format=fmt, offset=layout.offset, dtype=layout.dtype, origin=layout.origin)


def plan_splits(train: Sequence[InputFile], val: Sequence[InputFile], val_fraction: float,
                separator_bytes: int) -> dict[str, list[Document]]:
    """The documents of each split: the files as given, or the training files cut in two (see the module docstring).

    `separator_bytes` is the length of the separator's text in a concatenated copy of the
    corpus (what the cut position counts). Reads at most 4 bytes of one file.
    """
    if val:
        return {"train": [Document.whole(f) for f in train], "val": [Document.whole(f) for f in val]}
    kinds = {f.kind for f in train}
    if len(kinds) > 1:
        raise UserError("The training files mix text and token (.bin) files, so there is no one place to cut off the "
                        "validation split; pass --data.val_files.")
    tokens = kinds == {"tokens"}
    gap = 0 if tokens else separator_bytes
    total = sum(f.length for f in train) + gap * (len(train) - 1)
    cut = int(total * (1 - val_fraction))
    splits: dict[str, list[Document]] = {"train": [], "val": []}
    start = 0  # position of the current file in the concatenation
    for f in train:
        end = start + f.length
        if cut >= end:  # the whole file (and the separator after it, which is dropped) is training text
            splits["train"].append(Document(f, 0, f.length))
        elif cut <= start:
            splits["val"].append(Document(f, 0, f.length))
        else:
            local = cut - start if tokens else _character_start(f.path, cut - start)
            if local > 0:
                splits["train"].append(Document(f, 0, local))
            splits["val"].append(Document(f, local, f.length))
        start = end + gap
    return splits


def cut_after_encoding(train: Sequence[InputFile], val: Sequence[InputFile]) -> bool:
    """Whether the validation part is cut from the training files' tokens once they are encoded: when no
    validation files are given and the files are not all text or all token files (records and remote
    text have no length before they are read)."""
    if val:
        return False
    kinds = {f.kind for f in train}
    return any(not f.cut_before_encoding for f in train) or len(kinds) > 1


def token_cut(lengths: Sequence[int], val_fraction: float) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the last `val_fraction` of a sequence of documents of `lengths` tokens begins: for each
    document, its token ranges `(train, val)` (either may be empty, `(n, n)`).

    The cut is at token `int(total * (1 - val_fraction))` of the documents laid end to end, with at
    least one token on each side when there are two or more.
    """
    total = sum(lengths)
    cut = min(max(int(total * (1 - val_fraction)), 1), total - 1) if total >= 2 else total
    ranges, start = [], 0
    for n in lengths:
        local = min(max(cut - start, 0), n)
        ranges.append(((0, local), (local, n)))
        start += n
    return ranges


def _character_start(path: str, pos: int) -> int:
    """The largest offset `<= pos` that is not inside a UTF-8 multi-byte character of the file."""
    with open(path, "rb") as f:
        f.seek(max(pos - 3, 0))
        near = f.read(pos - max(pos - 3, 0) + 1)
    back = 0
    while back < len(near) - 1 and (near[len(near) - 1 - back] & 0xC0) == 0x80:
        back += 1
    return pos - back
