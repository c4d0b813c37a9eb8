"""The token cache: a tokenizer and one token shard per document, listed by a manifest.

`prepare_token_cache` turns text files into a folder

    <cache_dir>/<first file's stem>-<key>/
        manifest.json                  written last: the splits' shards, their sources, the separator policy
        tokenizer.json                 trained here on a sample of the training split, unless one was given
        train-00000-<file>-<id>.bin    one shard per document (+ .bin.json sidecar), see splits.py
        val-00000-<file>-<id>.bin
        .build.lock                    while a process builds it (build_lock.py)

No copy of the corpus is ever written: each document (a file, or its part in a split) is
encoded straight from its file into its shard, by `num_proc` processes, and hashed
(sha256) once on the way.

The folder's `key` hashes the settings and the files' absolute paths, so it is found with
nothing read. What a later start trusts, without reading the corpus or the tokens:

* a file whose size and modification time are those the manifest recorded is unchanged
  (a same-size edit that also restores the mtime goes unnoticed: `verify="full"`
  re-hashes every file);
* a file whose size or mtime changed is re-hashed; same hash: kept (the manifest is
  updated); other hash: only its documents are re-encoded, with the same tokenizer (a
  changed corpus keeps its tokenizer; delete the folder to retrain it). With the default
  split a change in size also moves the validation cut, re-encoding the file it falls in;
* a shard whose size or sidecar disagrees with the manifest is re-encoded;
* the tokenizer file must have the size and mtime recorded, else everything is rebuilt.

Several processes (DDP ranks, nodes sharing the folder) may call this at once: one builds
under the build lock, the others wait and then open what it wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from llm_lit.data.build_lock import LOCK_NAME, BuildLock
from llm_lit.data.manifest import (MANIFEST, Manifest, SeparatorPolicy, Shard, Source, read_manifest,
                                   write_manifest)
from llm_lit.data.splits import Document, InputFile, inspect_inputs, plan_splits
from llm_lit.data.token_array import TokenArray
from llm_lit.errors import UserError
from tokenizer import Tokenizer
from tokenizer.errors import NotUTF8Error, TokenizerError, WriteError
from tokenizer.pretokenize import TextRange
from tokenizer.sample import sample_ranges
from tokenizer.token_file import encode_ranges, read_sidecar
from tokenizer.train import train_bpe_on_ranges
from tokenizer.workers import available_cores

BUNDLED_CORPUS = Path(__file__).parent / "corpora" / "tinyshakespeare.txt"
TOKENIZER = "tokenizer.json"
#: Default of `tokenizer_sample_bytes`: see the README ("Real corpora") for the measurement behind it.
DEFAULT_TOKENIZER_SAMPLE_BYTES = 32_000_000
LAYOUT = 2  # of the cache folder; part of its key
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TokenCache:
    """A prepared token cache: its folder and manifest."""

    folder: Path
    manifest: Manifest

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer file trained into the cache (there is none when a tokenizer was given)."""
        return self.folder / TOKENIZER

    def split(self, name: str) -> TokenArray:
        """The tokens of split `name` ("train" or "val"): its shards memory-mapped, with the separators between."""
        documents = [shard.open(self.folder) for shard in self.manifest.splits[name]]
        return TokenArray(self.manifest.separator.parts(documents))

    def shard_paths(self, name: str) -> list[Path]:
        """The token files of split `name`, in order."""
        return [shard.path(self.folder) for shard in self.manifest.splits[name]]


def cache_settings(vocab_size: int, special_tokens: Sequence[str], val_fraction: Optional[float],
                   tokenizer: Optional[Tokenizer], utf8_errors: str, tokenizer_sample_bytes: int,
                   roles: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Every setting that changes the cache's tokens (`val_fraction` is None when validation files are given).

    `roles` are the special-token roles in effect (a given tokenizer's own, else the ones the trained
    tokenizer gets); they decide how documents are wrapped, and are left out when there are none, so a
    cache built without roles keeps its key.
    """
    settings = {"vocab_size": None if tokenizer else vocab_size, "special_tokens": list(special_tokens),
                "val_fraction": val_fraction, "tokenizer": tokenizer.fingerprint() if tokenizer else None,
                "utf8_errors": utf8_errors, "tokenizer_sample_bytes": None if tokenizer else tokenizer_sample_bytes}
    if roles:
        settings["roles"] = dict(roles)
    return settings


def cache_folder(cache_dir: str | os.PathLike, train_files: Sequence[str | os.PathLike],
                 val_files: Optional[Sequence[str | os.PathLike]], settings: dict[str, Any],
                 test_files: Optional[Sequence[str | os.PathLike]] = None) -> tuple[Path, str]:
    """The cache folder of these files and settings, and its key; reads nothing."""
    payload = {"layout": LAYOUT, "settings": settings, "train": [os.path.abspath(Path(p).expanduser()) for p in train_files],
               "val": [os.path.abspath(Path(p).expanduser()) for p in val_files or []]}
    if test_files:  # (only then: the key of a cache without a test split is unchanged)
        payload["test"] = [os.path.abspath(Path(p).expanduser()) for p in test_files]
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{Path(train_files[0]).stem}-{key}", key


def open_token_cache(folder: Path) -> Optional[TokenCache]:
    """The cache in `folder` as its manifest says (nothing else is read), or None when it has no manifest."""
    manifest = read_manifest(folder)
    return TokenCache(folder, manifest) if manifest is not None else None


def prepare_token_cache(
    train_files: Sequence[str | os.PathLike],
    val_files: Optional[Sequence[str | os.PathLike]],
    val_fraction: float,
    vocab_size: int,
    special_tokens: list[str],
    cache_dir: str | os.PathLike,
    tokenizer: Optional[Tokenizer] = None,
    utf8_errors: str = "strict",
    num_proc: Optional[int] = None,
    tokenizer_sample_bytes: int = DEFAULT_TOKENIZER_SAMPLE_BYTES,
    verify: str = "stat",
    progress: bool = False,
    roles: Optional[dict[str, str]] = None,
    test_files: Optional[Sequence[str | os.PathLike]] = None,
) -> TokenCache:
    """Build, update or reuse the token cache of a corpus (see the module docstring).

    Args:
        train_files: text files (or `.bin` token files) whose documents form the training split.
        val_files: files of the validation split; None takes the last `val_fraction` of the training files.
        val_fraction: share held out for validation when `val_files` is None.
        vocab_size, special_tokens: settings of the tokenizer trained on the training split.
        cache_dir: parent folder of the cache folders.
        tokenizer: use this tokenizer instead of training one (needed for `.bin` inputs).
        utf8_errors: "strict" refuses text that is not UTF-8 (saying where); "replace" uses U+FFFD.
        num_proc: processes for counting and encoding (default: every core).
        tokenizer_sample_bytes: train the tokenizer on about this many bytes of the training
            split, evenly spread; a smaller split is used whole.
        verify: "stat" trusts files whose size and mtime are unchanged; "full" re-hashes them all.
        progress: print what is built and progress lines (MB done, MB/s, time left) on stderr.
        roles: special-token roles (`{"bos": "<s>", "eos": "</s>"}`): set on the given tokenizer, or given to
            the trained one (whose special tokens then include them); with a BOS or EOS every document is
            wrapped in them (see `separator_policy`).
        test_files: files of a test split (none when not given).
    """
    if utf8_errors not in ("strict", "replace"):
        raise UserError(f"utf8_errors must be 'strict' or 'replace' (got {utf8_errors!r}); fix --data.utf8_errors.")
    if verify not in ("stat", "full"):
        raise UserError(f"verify must be 'stat' or 'full' (got {verify!r}); fix --data.verify.")
    num_proc = check_num_proc(num_proc)
    if not (isinstance(tokenizer_sample_bytes, int) and tokenizer_sample_bytes >= 1):
        raise UserError(f"tokenizer_sample_bytes must be a positive number of bytes (got {tokenizer_sample_bytes!r}); "
                        "fix --data.tokenizer_sample_bytes.")
    train = inspect_inputs(train_files, "training corpus")
    val = inspect_inputs(val_files, "validation") if val_files else []
    test = inspect_inputs(test_files, "test") if test_files else []
    tokenizer, special_tokens, roles = with_roles(tokenizer, list(special_tokens), roles)
    if tokenizer is None and any(f.kind == "tokens" for f in train + val + test):
        first = next(f for f in train + val + test if f.kind == "tokens")
        raise UserError(f"The token file '{first.path}' can only be used with the tokenizer that wrote it; pass that "
                        "tokenizer with --data.tokenizer_path.")
    settings = cache_settings(vocab_size, special_tokens, None if val else val_fraction, tokenizer, utf8_errors,
                              tokenizer_sample_bytes, roles)
    folder, key = cache_folder(cache_dir, train_files, val_files, settings, test_files)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the token cache folder '{folder}' ({e.strerror}); "
                        "pass a writable --data.cache_dir.") from e
    log = _logger(progress)
    builder = _Builder(folder, key, settings, train, val, val_fraction, vocab_size, list(special_tokens), tokenizer,
                       utf8_errors, num_proc, tokenizer_sample_bytes, verify == "full", progress, log, test, roles)
    manifest = read_manifest(folder)
    if manifest is not None and builder.why_not_current(manifest) is None:
        return TokenCache(folder, manifest)
    with BuildLock(folder, log=log):
        manifest = read_manifest(folder)  # another process may have built it while this one waited
        reason = builder.why_not_current(manifest) if manifest is not None else "no cache yet"
        if reason is None:
            return TokenCache(folder, manifest)
        return TokenCache(folder, builder.build(manifest, reason))


def with_roles(tokenizer: Optional[Tokenizer], special_tokens: list[str], roles: Optional[dict[str, str]]
               ) -> tuple[Optional[Tokenizer], list[str], dict[str, str]]:
    """The tokenizer (given ones get `roles` set), the special tokens to train with (plus the role tokens
    missing from them) and the roles in effect; `UserError` naming the setting for a role token a given
    tokenizer lacks."""
    roles = {k: v for k, v in (roles or {}).items() if v is not None}
    if tokenizer is None:
        return None, special_tokens + [t for t in dict.fromkeys(roles.values()) if t not in special_tokens], roles
    for role, token in roles.items():
        if tokenizer.token_to_id(token) is None:
            raise UserError(f"data.{role}_token {token!r} is not a special token of the given tokenizer (it has "
                            f"{tokenizer.special_tokens}); pick one of those or leave data.{role}_token unset.")
    tokenizer = tokenizer.with_roles(roles)
    return tokenizer, special_tokens, tokenizer.roles


def check_num_proc(num_proc: Optional[int]) -> int:
    """`num_proc`, or every core when None; UserError below 1."""
    if num_proc is None:
        return available_cores()
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise UserError(f"num_proc must be a whole number >= 1 (got {num_proc!r}); pass --data.num_proc 1 for no "
                        "worker processes, or leave it unset to use every core.")
    return num_proc


def hash_range(path: str, start: int, end: int) -> str:
    """sha256 hex digest of bytes `[start, end)` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left and (chunk := f.read(min(_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _logger(enabled: bool) -> Callable[[str], None]:
    def log(line: str) -> None:
        if enabled:
            print(line, file=sys.stderr, flush=True)
    return log


class _Builder:
    """Decides whether a cache folder is current, and brings it up to date (under the build lock)."""

    def __init__(self, folder: Path, key: str, settings: dict[str, Any], train: list[InputFile], val: list[InputFile],
                 val_fraction: float, vocab_size: int, special_tokens: list[str], tokenizer: Optional[Tokenizer],
                 utf8_errors: str, num_proc: int, sample_bytes: int, verify_full: bool, progress: bool,
                 log: Callable[[str], None], test: list[InputFile], roles: dict[str, str]) -> None:
        self.folder, self.key, self.settings = folder, key, settings
        self.train, self.val, self.test, self.val_fraction = train, val, test, val_fraction
        self.roles = roles
        self.vocab_size, self.special_tokens, self.given = vocab_size, special_tokens, tokenizer
        self.utf8_errors, self.num_proc, self.sample_bytes = utf8_errors, num_proc, sample_bytes
        self.verify_full, self.progress, self.log = verify_full, progress, log

    # ------------------------------------------------------------------ is it current?
    def why_not_current(self, manifest: Manifest) -> Optional[str]:
        """None when `manifest` describes these files as they are now (by stat); else why not."""
        if self.verify_full:
            return "--data.verify full re-hashes every file"
        if manifest.key != self.key or manifest.settings != self.settings:
            return "its settings differ"
        if self.given is None and _stat(self.folder / TOKENIZER) != (manifest.tokenizer.get("size"),
                                                                    manifest.tokenizer.get("mtime_ns")):
            return f"{TOKENIZER} is missing or changed"
        recorded = {s.source.path: (s.source.size, s.source.mtime_ns) for shards in manifest.splits.values()
                    for s in shards}
        for f in self.train + self.val + self.test:
            if recorded.get(f.path) != f.stat:
                return f"{f.path} changed (size or modification time)"
        fingerprint = manifest.tokenizer["fingerprint"]
        for shards in manifest.splits.values():
            for shard in shards:
                problem = _shard_problem(self.folder, shard, fingerprint, manifest.tokenizer["vocab_size"])
                if problem:
                    return problem
        return None

    # ------------------------------------------------------------------ building
    def build(self, old: Optional[Manifest], reason: str) -> Manifest:
        """Write the cache (reusing what `old` holds that is still right); returns the new manifest."""
        if old is None:
            self._note_old_format()
        separator_text = _separator_text(self.given.special_tokens if self.given else self.special_tokens)
        plan = plan_splits(self.train, self.val, self.val_fraction, len(separator_text.encode("utf-8")))
        if self.test:
            plan["test"] = [Document(f, 0, f.length) for f in self.test]
        tok, tokenizer_record = self._tokenizer(old, plan["train"])
        reusable = {doc.key: self._token_input(doc, tok) for docs in plan.values() for doc in docs
                    if doc.input.kind == "tokens"}
        reusable.update(self._reusable(old, tok, plan))
        todo = [(name, i, doc) for name, docs in plan.items() for i, doc in enumerate(docs) if doc.key not in reusable]
        self.log(f"token cache: building {self.folder} ({reason}): {len(todo)} of "
                 f"{sum(map(len, plan.values()))} documents to encode "
                 f"({sum(d.end - d.start for _, _, d in todo) / 1e6:,.1f} MB, {self.num_proc} processes)")
        encoded = self._encode(tok, todo)
        shards = {}
        for name, docs in plan.items():
            shards[name] = tuple(reusable[doc.key] if doc.key in reusable else encoded[(name, i)]
                                 for i, doc in enumerate(docs))
        if tokenizer_record.get("file") and "size" not in tokenizer_record:
            try:
                tok.save(self.folder / TOKENIZER)
            except TokenizerError as e:
                self._discard(encoded.values())
                raise UserError(f"Cannot write the tokenizer into the token cache '{self.folder}' ({e}); "
                                "pass a writable --data.cache_dir.") from None
            tokenizer_record["size"], tokenizer_record["mtime_ns"] = _stat(self.folder / TOKENIZER)
        manifest = Manifest(self.key, self.settings, tokenizer_record, separator_policy(tok), shards,
                            built_by=f"{socket.gethostname()}:{os.getpid()}")
        try:
            write_manifest(self.folder, manifest)
        except OSError as e:
            self._discard(encoded.values())
            raise UserError(f"Cannot write the token cache's manifest in '{self.folder}' ({e.strerror or e}); "
                            "free some space or pass another --data.cache_dir (the cache is as it was).") from None
        self._collect_garbage(manifest)
        return manifest

    def _tokenizer(self, old: Optional[Manifest], train_docs: list[Document]) -> tuple[Tokenizer, dict[str, Any]]:
        """The tokenizer (given, kept from the cache, or trained on a sample now) and its manifest record."""
        if self.given is not None:
            return self.given, {"file": None, "fingerprint": self.given.fingerprint(), "vocab_size": self.given.vocab_size}
        kept = self._kept_tokenizer(old)
        if kept is not None:
            return kept, dict(old.tokenizer)
        ranges = [TextRange(d.input.path, d.start, d.end) for d in train_docs]
        sample = sample_ranges(ranges, self.sample_bytes, self.special_tokens)
        sampled = sum(r.size for r in sample)
        self.log(f"token cache: training a {self.vocab_size:,}-token tokenizer on {sampled / 1e6:,.1f} MB "
                 f"of the {sum(r.size for r in ranges) / 1e6:,.1f} MB training split ({self.num_proc} processes)")
        try:
            vocab, merges = train_bpe_on_ranges(sample, self.vocab_size, self.special_tokens, self.num_proc,
                                                progress=self.progress, utf8_errors=self.utf8_errors)
        except NotUTF8Error as e:
            raise _not_utf8(e) from None
        tok = Tokenizer(vocab, merges, self.special_tokens, self.roles)
        return tok, {"file": TOKENIZER, "fingerprint": tok.fingerprint(), "vocab_size": tok.vocab_size,
                     "trained_on_bytes": sampled}

    def _kept_tokenizer(self, old: Optional[Manifest]) -> Optional[Tokenizer]:
        if old is None or _stat(self.folder / TOKENIZER) != (old.tokenizer.get("size"), old.tokenizer.get("mtime_ns")):
            return None
        try:
            tok = Tokenizer.load(self.folder / TOKENIZER)
        except (TokenizerError, OSError, ValueError, KeyError):
            return None
        return tok if tok.fingerprint() == old.tokenizer.get("fingerprint") else None

    def _reusable(self, old: Optional[Manifest], tok: Tokenizer, plan: dict[str, list[Document]]) -> dict[tuple, Shard]:
        """The shards of `old` that still hold the tokens of a planned text document, by document key."""
        fingerprint = tok.fingerprint()
        if old is None or old.tokenizer.get("fingerprint") != fingerprint:
            return {}
        by_key = {s.source.key: s for shards in old.splits.values() for s in shards if s.source.kind == "text"}
        reusable: dict[tuple, Shard] = {}
        for docs in plan.values():
            for doc in docs:
                shard = by_key.get(doc.key) if doc.input.kind == "text" else None
                if shard is None or _shard_problem(self.folder, shard, fingerprint, tok.vocab_size):
                    continue
                if doc.input.stat == (shard.source.size, shard.source.mtime_ns) and not self.verify_full:
                    reusable[doc.key] = shard
                elif hash_range(doc.input.path, doc.start, doc.end) == shard.source.sha256:
                    size, mtime_ns = doc.input.stat
                    reusable[doc.key] = dataclasses.replace(
                        shard, source=dataclasses.replace(shard.source, size=size, mtime_ns=mtime_ns))
                else:
                    self.log(f"token cache: {doc.input.path} changed; re-encoding its bytes {doc.start}..{doc.end}")
        return reusable

    def _encode(self, tok: Tokenizer, todo: list[tuple[str, int, Document]]) -> dict[tuple[str, int], Shard]:
        """Encode the documents into new shards (in parallel); on any error none of them is left."""
        outputs = [self.folder / _shard_name(name, i, doc) for name, i, doc in todo]
        ranges = [TextRange(doc.input.path, doc.start, doc.end) for _, _, doc in todo]
        sidecars: list[dict[str, Any]] = []
        try:
            sidecars = encode_ranges(tok, ranges, outputs, self.num_proc, self.progress, self.utf8_errors,
                                     atomic=False, replace=document_replacements(tok))
            for (_, _, doc), sidecar in zip(todo, sidecars):  # as planned, as read, and as it is now
                if not doc.input.stat == (sidecar["source_file_bytes"], sidecar["source_mtime_ns"]) == \
                        _stat(Path(doc.input.path)):
                    raise UserError(f"The corpus file '{doc.input.path}' changed while the token cache was being "
                                    "built; run again once nothing is writing to it.")
        except BaseException as e:
            for path in outputs:
                for p in (path, Path(f"{path}.json")):
                    p.unlink(missing_ok=True)
            if isinstance(e, NotUTF8Error):
                raise _not_utf8(e) from None
            if isinstance(e, WriteError):
                raise UserError(f"Cannot write the token cache in '{self.folder}' ({e.reason}); free some space or "
                                "pass another --data.cache_dir (the cache is as it was before this run).") from None
            if isinstance(e, TokenizerError) and "changed while it was being encoded" in str(e):
                raise UserError(f"A corpus file changed while the token cache was being built ({e}); run again "
                                "once nothing is writing to it.") from None
            raise
        return {(name, i): _text_shard(output, doc, sidecar)
                for (name, i, doc), output, sidecar in zip(todo, outputs, sidecars)}

    def _token_input(self, doc: Document, tok: Tokenizer) -> Shard:
        """A pre-tokenized input used as its own shard, after checking it was made by `tok`."""
        sidecar = doc.input.sidecar or {}
        if sidecar.get("tokenizer_fingerprint") != tok.fingerprint():
            raise UserError(f"The token file '{doc.input.path}' was written by another tokenizer than "
                            "--data.tokenizer_path; re-encode it with that tokenizer (python -m tokenizer encode).")
        source = Source(doc.input.path, "tokens", doc.start, doc.end, doc.input.size, doc.input.mtime_ns,
                        sidecar.get("source_sha256"))
        max_id = int(sidecar.get("max_id", int(sidecar.get("vocab_size", tok.vocab_size)) - 1))
        return Shard(doc.input.path, doc.input.length, max_id, sidecar["dtype"], source)

    def _discard(self, shards: Any) -> None:
        for shard in shards:
            for p in (shard.path(self.folder), Path(f"{shard.path(self.folder)}.json")):
                p.unlink(missing_ok=True)

    def _collect_garbage(self, manifest: Manifest) -> None:
        """Remove what the manifest does not list: replaced shards, leftovers of killed builds."""
        keep = {MANIFEST, TOKENIZER}
        for shards in manifest.splits.values():
            for shard in shards:
                keep.update({shard.file, f"{shard.file}.json"})
        for entry in os.scandir(self.folder):
            if entry.is_file() and entry.name not in keep and not entry.name.startswith(LOCK_NAME):
                Path(entry.path).unlink(missing_ok=True)

    def _note_old_format(self) -> None:
        """One line when the cache folder of the previous version (one train.bin, no manifest) is next door."""
        stem = self.folder.name.rsplit("-", 1)[0]
        for old in sorted(self.folder.parent.glob(f"{stem}-*")):
            if (old / "train.bin").is_file() and not (old / MANIFEST).exists():
                self.log(f"token cache: {old} is a cache in the previous single-file format, which is not read any "
                         f"more; building the sharded cache {self.folder} instead (delete the old folder to free "
                         "its space).")


def _shard_problem(folder: Path, shard: Shard, fingerprint: str, vocab_size: int) -> Optional[str]:
    """Why a shard of the cache cannot be trusted (missing, size or sidecar disagreeing, ids beyond the
    tokenizer's `vocab_size`), or None."""
    if shard.source.kind == "tokens":
        return None  # the user's token file: checked by `inspect_inputs` and its stat
    if shard.max_id >= vocab_size:
        return f"shard {shard.file} holds id {shard.max_id}, beyond the tokenizer's {vocab_size} ids"
    path = shard.path(folder)
    if _stat(path) != (shard.num_tokens * np.dtype(shard.dtype).itemsize, shard.mtime_ns):
        return f"shard {shard.file} is missing or changed (size or modification time)"
    try:
        sidecar = read_sidecar(path)
    except TokenizerError:
        return f"shard {shard.file} has no valid sidecar"
    if (sidecar.get("num_tokens"), sidecar.get("dtype"), sidecar.get("tokenizer_fingerprint")) != \
            (shard.num_tokens, shard.dtype, fingerprint):
        return f"the sidecar of shard {shard.file} disagrees with the manifest"
    return None


def _text_shard(output: Path, doc: Document, sidecar: dict[str, Any]) -> Shard:
    source = Source(doc.input.path, "text", doc.start, doc.end, sidecar["source_file_bytes"],
                    sidecar["source_mtime_ns"], sidecar["source_sha256"])
    return Shard(output.name, sidecar["num_tokens"], sidecar["max_id"], sidecar["dtype"], source, _stat(output)[1])


def _shard_name(split: str, index: int, doc: Document) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(doc.input.path).stem)[:40]
    return f"{split}-{index:05d}-{stem}-{secrets.token_hex(4)}.bin"


def _separator_text(special_tokens: Sequence[str]) -> str:
    """What separated files in a concatenated copy of the corpus: the first special token, else a blank line."""
    return special_tokens[0] if special_tokens else "\n\n"


def separator_policy(tok: Tokenizer) -> SeparatorPolicy:
    """How the documents of a split join: wrapped in the tokenizer's BOS and EOS when it has either role,
    else the first special token's id between them (the ids of a blank line without one).

    When the BOS and EOS are the same token (GPT-2's convention) one of it follows each document.
    """
    bos, eos = tok.role_id("bos"), tok.role_id("eos")
    if bos is not None or eos is not None:
        before = (bos,) if bos is not None and bos != eos else ()
        return SeparatorPolicy(before_each=before, after_each=(eos,) if eos is not None else ())
    if tok.special_tokens:
        return SeparatorPolicy(between=(tok.token_to_id(tok.special_tokens[0]),))
    return SeparatorPolicy(between=tuple(tok.encode("\n\n")))


def document_replacements(tok: Tokenizer) -> Optional[dict[int, tuple[int, ...]]]:
    """Ids written as others in a shard so that every document inside a file is wrapped too.

    A file may hold several documents separated by the end-of-text token (the first special
    token). With a BOS or EOS role, each end-of-text id inside the text becomes the EOS and BOS
    that close one document and open the next (`separator_policy` wraps the file's first and
    last); None when nothing changes (no roles, or the end-of-text token is the EOS and there is
    no separate BOS).
    """
    policy = separator_policy(tok)
    if not tok.special_tokens or policy.between:
        return None
    end_of_text = tok.token_to_id(tok.special_tokens[0])
    replacement = policy.after_each + policy.before_each
    return None if replacement == (end_of_text,) else {end_of_text: replacement}


def _stat(path: Path) -> tuple[Optional[int], Optional[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _not_utf8(e: NotUTF8Error) -> UserError:
    return UserError(f"The corpus file '{e.path}' is not UTF-8 text (bad byte {e.byte:#04x} at byte offset {e.offset}, "
                     f"line {e.line}); convert it to UTF-8 (e.g. iconv -t UTF-8) or pass --data.utf8_errors replace "
                     "to replace invalid bytes with U+FFFD.")


__all__ = ["BUNDLED_CORPUS", "DEFAULT_TOKENIZER_SAMPLE_BYTES", "TokenCache", "cache_folder", "cache_settings",
           "check_num_proc", "document_replacements", "hash_range", "open_token_cache", "prepare_token_cache",
           "separator_policy", "with_roles"]
