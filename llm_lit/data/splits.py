"""The corpus files as found on disk, and how they divide into the train and validation splits.

Each split is a list of *documents*: a whole source file, or the part of one that falls in
the split. Nothing is copied: a document is a byte range of a text file (or a token range
of a pre-tokenized `.bin` file), encoded straight into its own shard.

With no validation files, validation is the last `val_fraction` of the corpus as the
files concatenated with a separator between them would be (the separator's text counts,
as in a concatenated copy), the cut moved back to the start of a UTF-8 character. For
one ASCII file such as tinyshakespeare that is exactly nanoGPT's 90/10 split. A cut that
falls on or inside a separator moves to the end of the file before it, so that neither
split starts or ends with a separator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from llm_lit.errors import UserError
from tokenizer.errors import TokenizerError
from tokenizer.token_file import read_sidecar


@dataclass(frozen=True)
class InputFile:
    """One of `train_files` / `val_files`, as `stat` sees it: a text file or a token file (`.bin` + sidecar)."""

    path: str
    kind: str  # "text" or "tokens"
    size: int  # bytes on disk
    mtime_ns: int
    length: int  # units a split can cut: bytes of a text file, tokens of a token file
    sidecar: Optional[dict[str, Any]] = None

    @property
    def stat(self) -> tuple[int, int]:
        """What decides whether the file changed: size and modification time."""
        return self.size, self.mtime_ns


@dataclass(frozen=True)
class Document:
    """Units `[start, end)` of an input file: one document of a split."""

    input: InputFile
    start: int
    end: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        """What identifies the document: file, kind and range (as `manifest.Source.key`)."""
        return self.input.path, self.input.kind, self.start, self.end


def inspect_inputs(paths: Sequence[str | os.PathLike], what: str) -> list[InputFile]:
    """The files as `InputFile`s, after checking each exists and is not empty (else `UserError`).

    A `.bin` file is a token file written by `python -m tokenizer encode`; its sidecar is read
    and checked against its size. Nothing else of any file is read.
    """
    if not paths:
        raise UserError(f"No {what} files were given; pass at least one text file.")
    return [_inspect(Path(p).expanduser(), what) for p in paths]


def _inspect(path: Path, what: str) -> InputFile:
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))[:2]
        example = ", ".join(str(path / name) for name in names) or f"{path}/a.txt"
        flag = "--data.val_files" if what == "validation" else "--data.train_files"
        raise UserError(f"The {what} file '{path}' is a folder; list the text files in it instead, "
                        f"e.g. {flag} '[{example}]'.")
    if not path.is_file():
        raise UserError(f"The {what} file '{path}' does not exist; pass the path of an existing text file.")
    stat = path.stat()
    if stat.st_size == 0:
        raise UserError(f"The {what} file '{path}' is empty; pass a text file with some text in it.")
    absolute = os.path.abspath(path)
    if path.suffix != ".bin":
        return InputFile(absolute, "text", stat.st_size, stat.st_mtime_ns, stat.st_size)
    try:
        sidecar = read_sidecar(path)
        num_tokens = int(sidecar["num_tokens"])
        itemsize = np.dtype(sidecar["dtype"]).itemsize
    except TokenizerError as e:
        raise UserError(f"The {what} file '{path}' is a token file that cannot be used: {e}") from None
    except (KeyError, TypeError, ValueError):
        raise UserError(f"The {what} file '{path}' has a sidecar without a valid dtype or num_tokens; re-create it "
                        "with `python -m tokenizer encode`.") from None
    if stat.st_size != num_tokens * itemsize or num_tokens == 0:
        raise UserError(f"The {what} file '{path}' has {stat.st_size} bytes but its sidecar promises {num_tokens} "
                        f"{sidecar['dtype']} ids; re-create it with `python -m tokenizer encode`.")
    return InputFile(absolute, "tokens", stat.st_size, stat.st_mtime_ns, num_tokens, sidecar)


def plan_splits(train: Sequence[InputFile], val: Sequence[InputFile], val_fraction: float,
                separator_bytes: int) -> dict[str, list[Document]]:
    """The documents of each split: the files as given, or the training files cut in two (see the module docstring).

    `separator_bytes` is the length of the separator's text in a concatenated copy of the
    corpus (what the cut position counts). Reads at most 4 bytes of one file.
    """
    if val:
        return {"train": [Document(f, 0, f.length) for f in train], "val": [Document(f, 0, f.length) for f in val]}
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


def _character_start(path: str, pos: int) -> int:
    """The largest offset `<= pos` that is not inside a UTF-8 multi-byte character of the file."""
    with open(path, "rb") as f:
        f.seek(max(pos - 3, 0))
        near = f.read(pos - max(pos - 3, 0) + 1)
    back = 0
    while back < len(near) - 1 and (near[len(near) - 1 - back] & 0xC0) == 0x80:
        back += 1
    return pos - back
