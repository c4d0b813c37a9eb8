"""The token cache: a tokenizer and one token shard per document, listed by a manifest.

`prepare_token_cache` turns a corpus (text, JSONL, Parquet, Arrow, token files; local, globbed or
remote; one list of files or several weighted sources) into a folder

    <cache_dir>/<first file's stem, or the sources' names>-<key>/
        manifest.json                  written last: the splits' shards, their sources, the separator policy
        tokenizer.json                 trained here on a sample of the training split, unless one was given
        train-00000-<file>-<id>.bin    one shard per document (+ .bin.json sidecar), see splits.py
        val-00000-<file>-<id>.bin      (with sources: train-<name>-..., split "train/<name>")
        .build.lock                    while a process builds it (build_lock.py)
    <cache_dir>/<first test file's stem>-test-<key>/
        manifest.json, test-00000-<file>-<id>.bin, ...   the test split alone (`prepare_test_cache`)

No copy of the corpus is ever written: each document (a text file or its part in a split, a
whole record file, a remote object) is read once, straight into its shard, by `num_proc`
processes, and hashed (sha256) on the way where it is read in order.

The folder's `key` hashes the settings and the entries as given (absolute paths, globs and URLs
unexpanded), so it is found with nothing read. A given tokenizer (a checkpoint's) is part of the settings
by its fingerprint; the cache a fit built when it trained that very tokenizer is found first (`fits_cache`),
so validate and test from a checkpoint encode nothing again. The test split lives in a folder of its own,
keyed by the tokenizer's fingerprint and the test files, so a new list of test files encodes those files
only, and the training corpus is not read for it. What a later start trusts, without reading the
corpus or the tokens (a `stat` per local file, one listing per remote glob):

* a file whose size and modification time (remote: size and ETag) are those the manifest
  recorded is unchanged (a same-size edit that also restores the mtime goes unnoticed:
  `verify="full"` re-hashes every file, and every shard against the hash recorded when it was written);
* a local file whose size or mtime changed is re-hashed; same hash: kept (the manifest is
  updated); other hash: only its documents are re-encoded, with the same tokenizer (a
  changed corpus keeps its tokenizer; delete the folder to retrain it). With the default
  split a change in size also moves the validation cut, re-encoding the file it falls in;
  a remote object whose ETag changed is read again;
* a glob that matches other files than those recorded rebuilds what differs;
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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from llm_lit.data.build_lock import BuildLock
from llm_lit.data.builder import TOKENIZER, BuildReport, CacheBuilder, Part, hash_range
from llm_lit.data.formats.locate import entry_key, is_glob
from llm_lit.data.formats.remote import is_remote
from llm_lit.data.manifest import Manifest, read_manifest
from llm_lit.data.separators import document_replacements, separator_policy
from llm_lit.data.sources import DataSource, default_source, split_name
from llm_lit.data.splits import InputFile, inspect_inputs
from llm_lit.data.token_array import TokenArray
from llm_lit.errors import UserError
from tokenizer import Tokenizer
from tokenizer.workers import available_cores

BUNDLED_CORPUS = Path(__file__).parent / "corpora" / "tinyshakespeare.txt"
#: Merges a byte-level BPE can learn from all of the bundled corpus before its text has no pair left to merge
#: (measured by a slow test in tests/data/test_lit_token_cache.py; its default 90% training split gives 20,066), so
#: no tokenizer trained on it has more than 256 + this + its special tokens.
BUNDLED_MAX_MERGES = 21_276
#: Default of `tokenizer_sample_bytes`: see the README ("Real corpora") for the measurement behind it.
DEFAULT_TOKENIZER_SAMPLE_BYTES = 32_000_000
LAYOUT = 2  # of the cache folder; part of its key


@dataclass(frozen=True)
class TokenCache:
    """A prepared token cache: its folder and manifest (and, when this process built it, what it did)."""

    folder: Path
    manifest: Manifest
    report: Optional[BuildReport] = field(default=None, compare=False)
    #: The test split's own cache (keyed by the tokenizer's fingerprint and the test files), when there is one.
    test: Optional["TokenCache"] = field(default=None, compare=False)

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer file trained into the cache (there is none when a tokenizer was given)."""
        return self.folder / TOKENIZER

    @property
    def source_names(self) -> list[str]:
        """The names of the sources, in order ([""] for a plain list of training files)."""
        return list(self.manifest.notes.get("sources") or [""])

    def split(self, name: str) -> TokenArray:
        """The tokens of split `name` ("train", "val", "test", or a source's "train/<name>", "val/<name>"): its
        shards memory-mapped, with the separators between; every read checks its ids are the tokenizer's (a shard
        damaged on disk is named). "test" is read from the test split's own cache."""
        if name == "test" and self.test is not None:
            return self.test.split(name)
        documents = [shard.open(self.folder) for shard in self.manifest.splits[name]]
        return TokenArray(self.manifest.separator.parts(documents), id_limit=int(self.manifest.tokenizer["vocab_size"]))

    def source_split(self, split: str, source: str) -> TokenArray:
        """The tokens of a source's split ("train" or "val")."""
        return self.split(split_name(split, source))

    def shard_paths(self, name: str) -> list[Path]:
        """The token files of split `name`, in order."""
        if name == "test" and self.test is not None:
            return self.test.shard_paths(name)
        return [shard.path(self.folder) for shard in self.manifest.splits[name]]


def cache_settings(vocab_size: int, special_tokens: Sequence[str], val_fraction: Optional[float],
                   tokenizer: Optional[Tokenizer], utf8_errors: str, tokenizer_sample_bytes: int,
                   roles: Optional[dict[str, str]] = None, text_field: str = "text",
                   token_dtype: Optional[str] = None) -> dict[str, Any]:
    """Every setting that changes the cache's tokens (`val_fraction` is None when validation files are given).

    `roles` are the special-token roles in effect (a given tokenizer's own, else the ones the trained
    tokenizer gets); they decide how documents are wrapped, and are left out when there are none, so a
    cache built without roles keeps its key. `text_field` and `token_dtype` are left out at their defaults
    for the same reason.
    """
    settings = {"vocab_size": None if tokenizer else vocab_size, "special_tokens": list(special_tokens),
                "val_fraction": val_fraction, "tokenizer": tokenizer.fingerprint() if tokenizer else None,
                "utf8_errors": utf8_errors, "tokenizer_sample_bytes": None if tokenizer else tokenizer_sample_bytes}
    if roles:
        settings["roles"] = dict(roles)
    if text_field != "text":
        settings["text_field"] = text_field
    if token_dtype is not None:
        settings["token_dtype"] = token_dtype
    return settings


def cache_folder(cache_dir: str | os.PathLike, train_files: Sequence[str | os.PathLike],
                 val_files: Optional[Sequence[str | os.PathLike]], settings: dict[str, Any],
                 sources: Optional[Sequence[DataSource]] = None) -> tuple[Path, str]:
    """The cache folder of these files (or sources) and settings, and its key; reads nothing. (The test split has
    a folder of its own, `test_cache_folder`.)

    With `sources` (resolved, see `DataSource.resolved`) the key holds each source's name, entries, validation
    part and text field, and its weight when the tokenizer is trained (the weights share out its sample;
    with a given tokenizer a new mixture of the same sources reuses the cache).
    """
    payload: dict[str, Any] = {"layout": LAYOUT, "settings": settings}
    if sources:
        payload["sources"] = [_source_key(s, trained=settings.get("tokenizer") is None) for s in sources]
        stem = "+".join(s.name for s in sources)[:40]
    else:
        payload["train"] = [entry_key(str(p)) for p in train_files]
        payload["val"] = [entry_key(str(p)) for p in val_files or []]
        stem = _stem(str(train_files[0]))
    return _keyed(cache_dir, stem, payload)


def test_cache_folder(cache_dir: str | os.PathLike, test_files: Sequence[str | os.PathLike],
                      settings: dict[str, Any]) -> tuple[Path, str]:
    """The folder of a test split's own cache, and its key: `<first file's stem>-test-<key>`, the key hashing the
    settings (which hold the tokenizer's fingerprint) and the test files as given; reads nothing."""
    payload = {"layout": LAYOUT, "settings": settings, "test": [entry_key(str(p)) for p in test_files]}
    return _keyed(cache_dir, f"{_stem(str(test_files[0]))}-test", payload)


def _keyed(cache_dir: str | os.PathLike, stem: str, payload: dict[str, Any]) -> tuple[Path, str]:
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{stem}-{key}", key


def _source_key(source: DataSource, trained: bool) -> dict[str, Any]:
    key = {"name": source.name, "files": [entry_key(str(p)) for p in source.files],
           "val_files": [entry_key(str(p)) for p in source.val_files or []],
           "val_fraction": None if source.val_files else source.val_fraction, "text_field": source.text_field}
    if trained:
        key["weight"] = float(source.weight)
    return key


def _stem(entry: str) -> str:
    """A file's stem names its cache folder; a glob or URL gives its last plain path part, made safe."""
    if not is_glob(entry) and not is_remote(entry):
        return Path(entry).stem
    parts = [p for p in entry.split("://")[-1].split("/") if p and not is_glob(p)]
    stem = Path(parts[-1]).stem if parts else "corpus"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:40] or "corpus"


def open_token_cache(folder: Path) -> Optional[TokenCache]:
    """The cache in `folder` as its manifest says (nothing else is read), or None when it has no manifest."""
    manifest = read_manifest(folder)
    return TokenCache(folder, manifest) if manifest is not None else None


def prepare_token_cache(
    train_files: Optional[Sequence[str | os.PathLike]],
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
    sources: Optional[Sequence[DataSource]] = None,
    text_field: str = "text",
    token_dtype: Optional[str] = None,
) -> TokenCache:
    """Build, update or reuse the token cache of a corpus (see the module docstring).

    Args:
        train_files: files whose documents form the training split (entries as `llm_lit.data.formats` reads
            them: text, token files, JSONL, Parquet, Arrow, dataset folders, globs, URLs); None with `sources`.
        val_files: files of the validation split; None takes the last `val_fraction` of the training files.
        val_fraction: share held out for validation when `val_files` is None (the default of each source's).
        vocab_size, special_tokens: settings of the tokenizer trained on the training split.
        cache_dir: parent folder of the cache folders.
        tokenizer: use this tokenizer instead of training one (needed for `.bin` inputs).
        utf8_errors: "strict" refuses text that is not UTF-8 (saying where); "replace" uses U+FFFD.
        num_proc: processes for counting and encoding (default: every core).
        tokenizer_sample_bytes: train the tokenizer on about this many bytes of the training
            split, evenly spread (shared out among sources by weight); a smaller split is used whole.
        verify: "stat" trusts files whose size and mtime are unchanged; "full" re-hashes them all.
        progress: print what is built and progress lines (MB done, MB/s, time left) on stderr.
        roles: special-token roles (`{"bos": "<s>", "eos": "</s>"}`): set on the given tokenizer, or given to
            the trained one (whose special tokens then include them); with a BOS or EOS every document is
            wrapped in them (see `separator_policy`).
        test_files: files of a test split (none when not given).
        sources: weighted sources instead of `train_files` / `val_files` (`DataSource`s, already checked);
            each keeps its own splits, "train/<name>" and "val/<name>".
        text_field: the column or key of a record's text (the default of each source's).
        token_dtype: "uint16" or "uint32", the ids of headerless token files (nanoGPT's); None refuses them.
    """
    _check_options(utf8_errors, verify, tokenizer_sample_bytes)
    num_proc = check_num_proc(num_proc)
    named = [s.resolved(val_fraction, text_field) for s in sources] if sources else None
    request = CacheRequest(Path(cache_dir).expanduser(), list(train_files or []), val_files, named,
                           None if named or val_files else val_fraction, vocab_size, list(special_tokens), roles,
                           utf8_errors, tokenizer_sample_bytes, text_field, token_dtype)
    resolved = named or [default_source(train_files, val_files, val_fraction, text_field)]
    parts = [_inspect_source(s, token_dtype) for s in resolved]
    build = _BuildOptions(num_proc, verify == "full", progress)
    cache = (fits_cache(request, tokenizer, parts, build) if tokenizer is not None else None) or \
        _up_to_date(_builder(plan_cache(request, tokenizer), request, parts, [], build))
    if not test_files:
        return cache
    tok = tokenizer or Tokenizer.load(cache.tokenizer_path)
    test = prepare_test_cache(test_files, tok, cache_dir, utf8_errors=utf8_errors, num_proc=num_proc, verify=verify,
                              progress=progress, roles=roles, text_field=text_field, token_dtype=token_dtype)
    return dataclasses.replace(cache, test=test)


def prepare_test_cache(
    test_files: Sequence[str | os.PathLike],
    tokenizer: Tokenizer,
    cache_dir: str | os.PathLike,
    utf8_errors: str = "strict",
    num_proc: Optional[int] = None,
    verify: str = "stat",
    progress: bool = False,
    roles: Optional[dict[str, str]] = None,
    text_field: str = "text",
    token_dtype: Optional[str] = None,
) -> TokenCache:
    """Build, update or reuse the cache of a test split alone: `test_files` encoded with `tokenizer`, in a folder
    keyed by the tokenizer's fingerprint and the files as given (see `test_cache_folder`), so that `llm_lit test`
    from a checkpoint encodes those files only, once, and never reads the training corpus.

    The arguments are those of `prepare_token_cache`; the cache's split is "test".
    """
    _check_options(utf8_errors, verify, DEFAULT_TOKENIZER_SAMPLE_BYTES)
    tok, _, in_effect = with_roles(tokenizer, list(tokenizer.special_tokens), roles)
    settings = cache_settings(0, tok.special_tokens, None, tok, utf8_errors, DEFAULT_TOKENIZER_SAMPLE_BYTES, in_effect,
                              text_field, token_dtype)
    folder, key = test_cache_folder(cache_dir, test_files, settings)
    plan = CachePlan(tok, list(tok.special_tokens), in_effect, settings, folder, key)
    request = CacheRequest(Path(cache_dir).expanduser(), [], None, None, None, tok.vocab_size, list(tok.special_tokens),
                           roles, utf8_errors, DEFAULT_TOKENIZER_SAMPLE_BYTES, text_field, token_dtype)
    test = inspect_inputs(test_files, "test", "--data.test_files", token_dtype, text_field)
    return _up_to_date(_builder(plan, request, [], test, _BuildOptions(check_num_proc(num_proc), verify == "full",
                                                                       progress)))


@dataclass(frozen=True)
class CacheRequest:
    """What decides a corpus cache's folder and tokens, but the tokenizer: the arguments of `prepare_token_cache`
    (`sources` resolved; `plain_val` the validation share of a plain file list without validation files, else None)."""

    cache_dir: Path
    train_files: Sequence[str | os.PathLike]
    val_files: Optional[Sequence[str | os.PathLike]]
    sources: Optional[list[DataSource]]
    plain_val: Optional[float]
    vocab_size: int
    special_tokens: list[str]
    roles: Optional[dict[str, str]]
    utf8_errors: str
    sample_bytes: int
    text_field: str
    token_dtype: Optional[str]


@dataclass(frozen=True)
class CachePlan:
    """Where a cache lives and what builds it: the tokenizer (a given one with its roles set, or None to train one),
    the special tokens to train with, the roles in effect, the settings of its key, its folder and key."""

    tokenizer: Optional[Tokenizer]
    special_tokens: list[str]
    roles: dict[str, str]
    settings: dict[str, Any]
    folder: Path
    key: str


@dataclass(frozen=True)
class _BuildOptions:
    num_proc: int
    verify_full: bool
    progress: bool


def plan_cache(request: CacheRequest, tokenizer: Optional[Tokenizer]) -> CachePlan:
    """The cache of `request` with `tokenizer` given (None: trained into the cache); reads nothing."""
    tok, specials, in_effect = with_roles(tokenizer, list(request.special_tokens), request.roles)
    settings = cache_settings(request.vocab_size, specials, request.plain_val, tok, request.utf8_errors,
                              request.sample_bytes, in_effect, request.text_field, request.token_dtype)
    folder, key = cache_folder(request.cache_dir, request.train_files, request.val_files, settings,
                               sources=request.sources)
    return CachePlan(tok, specials, in_effect, settings, folder, key)


def fits_cache(request: CacheRequest, tokenizer: Tokenizer, parts: list[Part], build: "_BuildOptions"
               ) -> Optional[TokenCache]:
    """The cache that a fit of `request` built when it trained `tokenizer` (the same fingerprint), when it is
    current; None otherwise. This is how validate, test and predict from a checkpoint find fit's cache."""
    plan = plan_cache(request, None)
    manifest = read_manifest(plan.folder)
    if manifest is None or manifest.tokenizer.get("fingerprint") != tokenizer.fingerprint():
        return None
    quiet = _BuildOptions(build.num_proc, build.verify_full, False)
    return TokenCache(plan.folder, manifest) if _builder(plan, request, parts, [], quiet).why_not_current(manifest) \
        is None else None


def _builder(plan: CachePlan, request: CacheRequest, parts: list[Part], test: list[InputFile],
             build: _BuildOptions) -> CacheBuilder:
    """The builder of `plan`'s folder from these inputs."""
    return CacheBuilder(plan.folder, plan.key, plan.settings, parts, test, request.vocab_size, plan.special_tokens,
                        plan.tokenizer, request.utf8_errors, build.num_proc, request.sample_bytes, build.verify_full,
                        build.progress, _logger(build.progress), plan.roles)


def _up_to_date(builder: CacheBuilder) -> TokenCache:
    """The builder's cache as it stands when current, else brought up to date under the build lock (another process
    may have built it while this one waited; the manifest is written last, so nothing half-built is ever read)."""
    folder, log = builder.folder, builder.log
    if builder.given is None and any(f.kind == "tokens" for f in builder.inputs):
        first = next(f for f in builder.inputs if f.kind == "tokens")
        raise UserError(f"The token file '{first.path}' can only be used with the tokenizer that wrote it; pass that "
                        "tokenizer with --data.tokenizer_path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the token cache folder '{folder}' ({e.strerror}); "
                        "pass a writable --data.cache_dir.") from e
    manifest = read_manifest(folder)
    if manifest is not None and builder.why_not_current(manifest) is None:
        return TokenCache(folder, manifest)
    with BuildLock(folder, log=log):
        manifest = read_manifest(folder)
        reason = builder.why_not_current(manifest) if manifest is not None else "no cache yet"
        if reason is None:
            return TokenCache(folder, manifest)
        return TokenCache(folder, builder.build(manifest, reason), builder.report)


def _check_options(utf8_errors: str, verify: str, tokenizer_sample_bytes: int) -> None:
    """One sentence for a bad utf8_errors, verify or tokenizer_sample_bytes."""
    if utf8_errors not in ("strict", "replace"):
        raise UserError(f"utf8_errors must be 'strict' or 'replace' (got {utf8_errors!r}); fix --data.utf8_errors.")
    if verify not in ("stat", "full"):
        raise UserError(f"verify must be 'stat' or 'full' (got {verify!r}); fix --data.verify.")
    if not (isinstance(tokenizer_sample_bytes, int) and tokenizer_sample_bytes >= 1):
        raise UserError(f"tokenizer_sample_bytes must be a positive number of bytes (got {tokenizer_sample_bytes!r}); "
                        "fix --data.tokenizer_sample_bytes.")


def _inspect_source(source: DataSource, token_dtype: Optional[str]) -> Part:
    """A resolved source's files as found (globs expanded, remote objects listed)."""
    label = f" of source '{source.name}'" if source.name else ""
    where = f"data.sources ({source.name})" if source.name else "--data.train_files"
    train = inspect_inputs(source.files, f"training corpus{label}" if label else "training corpus", where,
                           token_dtype, source.text_field)
    val = inspect_inputs(source.val_files, f"validation{label}", where if source.name else "--data.val_files",
                         token_dtype, source.text_field) if source.val_files else []
    return Part(source.name, float(source.weight), train, val, source.val_fraction)


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


def _logger(enabled: bool) -> Callable[[str], None]:
    def log(line: str) -> None:
        if enabled:
            print(line, file=sys.stderr, flush=True)
    return log


__all__ = ["BUNDLED_CORPUS", "BUNDLED_MAX_MERGES", "DEFAULT_TOKENIZER_SAMPLE_BYTES", "CachePlan", "CacheRequest", "TokenCache",
           "cache_folder", "cache_settings", "check_num_proc", "document_replacements", "fits_cache", "hash_range",
           "open_token_cache", "plan_cache", "prepare_test_cache", "prepare_token_cache", "separator_policy",
           "test_cache_folder", "with_roles"]
