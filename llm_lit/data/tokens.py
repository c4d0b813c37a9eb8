"""The token cache: tokenizer + train/val token files, built once per corpus and settings.

`prepare_token_cache` turns text files into a folder

    <cache_dir>/<corpus name>-<fingerprint>/
        tokenizer.json            (trained here unless a tokenizer file was given)
        train.bin, train.bin.json (flat token array + sidecar, see tokenizer.token_file)
        val.bin,   val.bin.json

keyed by a fingerprint of the corpus bytes and every setting that changes the tokens,
so a changed corpus or setting gets a new folder. Everything is written atomically and
checked through its sidecar before reuse; a file that fails the check is rebuilt.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from llm_lit.errors import UserError
from tokenizer import Tokenizer, train_bpe
from tokenizer.atomic import atomic_write
from tokenizer.errors import TokenizerError
from tokenizer.token_file import read_token_file, write_token_file

BUNDLED_CORPUS = Path(__file__).parent / "corpora" / "tinyshakespeare.txt"
CACHE_FORMAT_VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TokenCache:
    """Paths of one prepared corpus: its tokenizer and its two token files."""

    folder: Path
    tokenizer_path: Path
    train_path: Path
    val_path: Path


def check_text_files(paths: Sequence[str | os.PathLike], what: str) -> list[Path]:
    """The paths as `Path`s, after checking each exists and is non-empty (else `UserError`)."""
    checked = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise UserError(f"The {what} file '{path}' does not exist; pass the path of an existing text file.")
        if path.stat().st_size == 0:
            raise UserError(f"The {what} file '{path}' is empty; pass a text file with some text in it.")
        checked.append(path)
    if not checked:
        raise UserError(f"No {what} files were given; pass at least one text file.")
    return checked


def file_sha256(path: Path, check_utf8: bool = False) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks; with `check_utf8`, `UserError` at the first
    byte that is not UTF-8 (naming the file, byte offset and line)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset, lines = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if check_utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    _not_utf8(path, chunk, offset, lines, e)
                lines += chunk.count(b"\n")
            offset += len(chunk)
        if check_utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise UserError(f"The corpus file '{path}' is not UTF-8 text (it ends inside a character, at byte "
                                f"offset {offset}); convert it to UTF-8 or pass --data.utf8_errors replace.") from None
    return digest.hexdigest()


def _not_utf8(path: Path, chunk: bytes, offset: int, lines: int, error: UnicodeDecodeError) -> None:
    # The incremental decoder may hold back up to 3 bytes of a character begun in the previous chunk;
    # the error's start is relative to those held bytes plus this chunk, so locate the bad byte directly.
    start = max(error.start - (len(error.object) - len(chunk)), 0)
    line = lines + chunk[:start].count(b"\n") + 1
    raise UserError(f"The corpus file '{path}' is not UTF-8 text (bad byte {chunk[start]:#04x} at byte offset "
                    f"{offset + start}, line {line}); convert it to UTF-8 (e.g. iconv -t UTF-8) or pass "
                    "--data.utf8_errors replace to replace invalid bytes with U+FFFD.")


def cache_key(train_files: Sequence[Path], val_files: Sequence[Path], settings: dict, check_utf8: bool = False) -> str:
    """Fingerprint of the corpus bytes and the settings: the name of the cache folder."""
    payload = {
        "version": CACHE_FORMAT_VERSION,
        "train": [file_sha256(p, check_utf8) for p in train_files],
        "val": [file_sha256(p, check_utf8) for p in val_files],
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def concatenate(paths: Sequence[Path], out: Path, separator: bytes, utf8_errors: str = "strict") -> None:
    """Write the files' bytes one after another, `separator` between files, atomically to `out`.

    With `utf8_errors="replace"` each invalid UTF-8 byte sequence becomes U+FFFD on the way.
    """
    with atomic_write(out, "wb") as dst:
        for i, path in enumerate(paths):
            if i:
                dst.write(separator)
            decoder = codecs.getincrementaldecoder("utf-8")("replace") if utf8_errors == "replace" else None
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk if decoder is None else decoder.decode(chunk).encode("utf-8"))
            if decoder is not None:
                dst.write(decoder.decode(b"", final=True).encode("utf-8"))


def utf8_boundary(data: bytes, pos: int) -> int:
    """The largest offset `<= pos` that does not fall inside a UTF-8 multi-byte character."""
    while 0 < pos < len(data) and (data[pos] & 0xC0) == 0x80:
        pos -= 1
    return pos


def split_tail(source: Path, head_out: Path, tail_out: Path, tail_fraction: float) -> None:
    """Split `source` into its first `1 - tail_fraction` and its last `tail_fraction` of bytes.

    The cut is at `int(size * (1 - tail_fraction))` (moved back to a character boundary):
    for an ASCII file such as tinyshakespeare this is exactly nanoGPT's 90/10 split.
    """
    size = source.stat().st_size
    with open(source, "rb") as f:
        cut = int(size * (1 - tail_fraction))
        f.seek(max(cut - 4, 0))
        near = f.read(8)
        cut = max(cut - 4, 0) + utf8_boundary(near, min(cut, 4))
        f.seek(0)
        for out, length in ((head_out, cut), (tail_out, size - cut)):
            with atomic_write(out, "wb") as dst:
                left = length
                while left:
                    chunk = f.read(min(_CHUNK, left))
                    dst.write(chunk)
                    left -= len(chunk)


def train_tokenizer(train_text: Path, vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE tokenizer trained on the file `train_text`."""
    vocab, merges = train_bpe(train_text, vocab_size, special_tokens=special_tokens)
    return Tokenizer(vocab, merges, special_tokens=special_tokens)


def open_tokens(path: Path, tokenizer: Tokenizer, check_ids: bool = False) -> np.memmap:
    """Open a token file read-only after checking its sidecar against `tokenizer` (else `TokenizerError`).

    With `check_ids`, also read every id once and refuse a file holding ids outside the vocabulary.
    """
    tokens = read_token_file(path, expected_tokenizer_fingerprint=tokenizer.fingerprint(),
                             vocab_size=tokenizer.vocab_size)
    if check_ids:
        largest = max((int(tokens[i:i + (1 << 24)].max()) for i in range(0, len(tokens), 1 << 24)), default=0)
        if largest >= tokenizer.vocab_size:
            raise TokenizerError(f"token file {path} holds id {largest}, outside the tokenizer's {tokenizer.vocab_size} "
                                 "ids; delete it (and its .json sidecar) so that it is rebuilt.")
    return tokens


def is_trusted(path: Path, tokenizer: Tokenizer) -> bool:
    """Whether a token file exists and passes every sidecar check."""
    try:
        open_tokens(path, tokenizer)
        return True
    except (TokenizerError, OSError, ValueError):
        return False


def prepare_token_cache(train_files: Sequence[str | os.PathLike], val_files: Optional[Sequence[str | os.PathLike]],
                        val_fraction: float, vocab_size: int, special_tokens: list[str], cache_dir: str | os.PathLike,
                        tokenizer: Optional[Tokenizer] = None, utf8_errors: str = "strict") -> TokenCache:
    """Build (or reuse) the token cache of a corpus; returns its paths.

    Args:
        train_files: text files whose concatenation is the training corpus.
        val_files: text files of the validation split; None takes the last `val_fraction` of the corpus.
        val_fraction: share of the corpus held out for validation when `val_files` is None.
        vocab_size, special_tokens: settings of the tokenizer trained on the training split.
        cache_dir: parent folder of the cache folders.
        tokenizer: use this tokenizer instead of training one.
        utf8_errors: "strict" refuses a corpus that is not UTF-8 (naming the byte offset); "replace" replaces
            invalid bytes with U+FFFD.
    """
    if utf8_errors not in ("strict", "replace"):
        raise UserError(f"utf8_errors must be 'strict' or 'replace' (got {utf8_errors!r}); fix --data.utf8_errors.")
    train_paths = check_text_files(train_files, "training corpus")
    val_paths = check_text_files(val_files, "validation") if val_files else []
    settings = {"vocab_size": vocab_size, "special_tokens": list(special_tokens),
                "val_fraction": None if val_paths else val_fraction,
                "tokenizer": tokenizer.fingerprint() if tokenizer is not None else None}
    if utf8_errors != "strict":
        settings["utf8_errors"] = utf8_errors  # (absent when strict, so existing caches keep their keys)
    key = cache_key(train_paths, val_paths, settings, check_utf8=utf8_errors == "strict")
    folder = Path(cache_dir).expanduser() / f"{train_paths[0].stem}-{key}"
    cache = TokenCache(folder, folder / "tokenizer.json", folder / "train.bin", folder / "val.bin")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the token cache folder '{folder}' ({e.strerror}); "
                        "pass a writable --data.cache_dir.") from e

    tok = tokenizer or _load_cached_tokenizer(cache)
    if tok is not None and is_trusted(cache.train_path, tok) and is_trusted(cache.val_path, tok):
        return cache

    separator = (special_tokens[0] if special_tokens else "\n\n").encode("utf-8")
    texts = {"corpus": folder / "corpus.txt", "train": folder / "train.txt", "val": folder / "val.txt"}
    try:
        _write_split_texts(train_paths, val_paths, val_fraction, separator, texts, utf8_errors)
        if tok is None:
            tok = train_tokenizer(texts["train"], vocab_size, list(special_tokens))
            tok.save(cache.tokenizer_path)
        for name, out in (("train", cache.train_path), ("val", cache.val_path)):
            if not is_trusted(out, tok):
                write_token_file(tok, texts[name], out)
    finally:
        for text in texts.values():
            text.unlink(missing_ok=True)
    return cache


def _load_cached_tokenizer(cache: TokenCache) -> Optional[Tokenizer]:
    try:
        return Tokenizer.load(cache.tokenizer_path) if cache.tokenizer_path.is_file() else None
    except (TokenizerError, OSError, ValueError, KeyError):
        return None


def _write_split_texts(train_paths: list[Path], val_paths: list[Path], val_fraction: float, separator: bytes,
                       texts: dict[str, Path], utf8_errors: str = "strict") -> None:
    """Write `texts["train"]` and `texts["val"]`: the files as given, or the corpus split in two."""
    if val_paths:
        concatenate(train_paths, texts["train"], separator, utf8_errors)
        concatenate(val_paths, texts["val"], separator, utf8_errors)
        return
    concatenate(train_paths, texts["corpus"], separator, utf8_errors)
    split_tail(texts["corpus"], texts["train"], texts["val"], val_fraction)
