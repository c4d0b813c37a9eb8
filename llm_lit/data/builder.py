"""`CacheBuilder`: decides whether a token-cache folder is current, and brings it up to date (under the
build lock, see `llm_lit.data.tokens`).

Each source's documents are planned (`splits.py`), the tokenizer is trained on a sample drawn across
the sources by weight (unless given), every document that is not already encoded is encoded into
one shard, and the manifest is written last. Sources of record files or remote text are cut into
train and validation after encoding, by tokens.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from llm_lit.data.build_lock import LOCK_NAME
from llm_lit.data.formats.inputs import RecordInput, StreamTextInput, hash_file
from llm_lit.data.formats.token_files import largest_id
from llm_lit.data.manifest import MANIFEST, Manifest, Shard, Source, write_manifest
from llm_lit.data.separators import document_replacements, separator_policy, separator_text
from llm_lit.data.sources import split_name
from llm_lit.data.splits import Document, InputFile, cut_after_encoding, plan_splits, token_cut
from llm_lit.data.tokenizer_sample import tokenizer_sample
from llm_lit.errors import UserError
from tokenizer import Tokenizer
from tokenizer.errors import NotUTF8Error, TokenizerError, WriteError
from tokenizer.pretokenize import TextRange
from tokenizer.token_file import RangeInput, TextInput, encode_inputs, read_sidecar
from tokenizer.train import train_bpe_on_ranges

TOKENIZER = "tokenizer.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One source as found on disk: its name ("" for a plain train_files list), weight, training and
    validation files, and the share held out when it has no validation files."""

    name: str
    weight: float
    train: list[InputFile]
    val: list[InputFile]
    val_fraction: float


@dataclass
class BuildReport:
    """What one build did per source: seconds spent encoding it and bytes of text it encoded (sources
    taken whole from an earlier build are absent)."""

    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    text_bytes: dict[str, int] = dataclasses.field(default_factory=dict)


class CacheBuilder:
    """Decides whether a cache folder is current, and brings it up to date (under the build lock)."""

    def __init__(self, folder: Path, key: str, settings: dict[str, Any], parts: list[Part], test: list[InputFile],
                 vocab_size: int, special_tokens: list[str], tokenizer: Optional[Tokenizer], utf8_errors: str,
                 num_proc: int, sample_bytes: int, verify_full: bool, progress: bool, log: Callable[[str], None],
                 roles: dict[str, str]) -> None:
        self.folder, self.key, self.settings = folder, key, settings
        self.parts, self.test = parts, test
        self.vocab_size, self.special_tokens, self.given = vocab_size, special_tokens, tokenizer
        self.utf8_errors, self.num_proc, self.sample_bytes = utf8_errors, num_proc, sample_bytes
        self.verify_full, self.progress, self.log = verify_full, progress, log
        self.roles = roles
        self.report = BuildReport()

    @property
    def inputs(self) -> list[InputFile]:
        """Every input file: each source's training and validation files, then the test files."""
        return [f for part in self.parts for f in part.train + part.val] + list(self.test)

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
        recorded = {s.source.path: s.source for shards in manifest.splits.values() for s in shards}
        inputs = self.inputs
        if set(recorded) != {f.path for f in inputs}:
            return "the files listed (or matched by a glob) are not those it was built from"
        for f in inputs:
            source = recorded[f.path]
            if not f.same_as(source.size, source.mtime_ns, source.version):
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
        gap = len(separator_text(self.given.special_tokens if self.given else self.special_tokens).encode("utf-8"))
        plans = {part.name: self._plan(part, gap) for part in self.parts}
        test_docs = [Document.whole(f) for f in self.test]
        tok, tokenizer_record = self._tokenizer(old, [(part.weight, plans[part.name]["train"]) for part in self.parts])
        owners = self._owners(plans, test_docs)
        documents = {doc.key: doc for doc, _ in owners.values()}
        reusable = {key: self._token_input(doc, tok, old) for key, doc in documents.items()
                    if doc.input.kind == "tokens"}
        reusable.update(self._reusable(old, tok, documents))
        todo = [(label, doc) for key, (doc, label) in owners.items() if key not in reusable]
        self.log(f"token cache: building {self.folder} ({reason}): {len(todo)} of {len(documents)} documents to encode "
                 f"({sum(_planned_bytes(d) for _, d in todo) / 1e6:,.1f} MB, {_processes(self.num_proc)})")
        for _, doc in todo:  # a record file without its text field fails now, before anything is encoded
            if doc.input.kind == "records":
                RecordInput(doc.input.located(), doc.input.text_field).check()
        encoded = self._encode(tok, todo)
        shard_of = {**reusable, **encoded}
        try:
            splits = self._splits(plans, test_docs, shard_of)
        except UserError:
            self._discard(encoded.values())
            raise
        if tokenizer_record.get("file") and "size" not in tokenizer_record:
            try:
                tok.save(self.folder / TOKENIZER)
            except TokenizerError as e:
                self._discard(encoded.values())
                raise UserError(f"Cannot write the tokenizer into the token cache '{self.folder}' ({e}); "
                                "pass a writable --data.cache_dir.") from None
            tokenizer_record["size"], tokenizer_record["mtime_ns"] = _stat(self.folder / TOKENIZER)
        notes = {"sources": [part.name for part in self.parts]} if self.parts and self.parts[0].name else {}
        manifest = Manifest(self.key, self.settings, tokenizer_record, separator_policy(tok), splits,
                            built_by=f"{socket.gethostname()}:{os.getpid()}", notes=notes)
        try:
            write_manifest(self.folder, manifest)
        except OSError as e:
            self._discard(encoded.values())
            raise UserError(f"Cannot write the token cache's manifest in '{self.folder}' ({e.strerror or e}); "
                            "free some space or pass another --data.cache_dir (the cache is as it was).") from None
        self._collect_garbage(manifest)
        return manifest

    def _plan(self, part: Part, gap: int) -> dict[str, Any]:
        """The documents of a source's training and validation splits; `val` is None when the validation part
        is cut from the training files' tokens after encoding."""
        if cut_after_encoding(part.train, part.val):
            return {"train": [Document.whole(f) for f in part.train], "val": None}
        return plan_splits(part.train, part.val, part.val_fraction, gap)

    def _owners(self, plans: dict[str, dict[str, Any]], test_docs: list[Document]
                ) -> dict[tuple, tuple[Document, str]]:
        """Every document to hold in a shard, by key, in order: the document and the label of the first split
        listing it (the label names its shard file)."""
        owners: dict[tuple, tuple[Document, str]] = {}
        for part in self.parts:
            for split in ("train", "val"):
                for doc in plans[part.name][split] or []:
                    owners.setdefault(doc.key, (doc, split_name(split, part.name).replace("/", "-")))
        for doc in test_docs:
            owners.setdefault(doc.key, (doc, "test"))
        return owners

    def _splits(self, plans: dict[str, dict[str, Any]], test_docs: list[Document], shard_of: dict[tuple, Shard]
                ) -> dict[str, tuple[Shard, ...]]:
        """Each split's shards: as planned, or cut by tokens (with spans) for sources cut after encoding."""
        splits: dict[str, tuple[Shard, ...]] = {}
        for part in self.parts:
            plan = plans[part.name]
            train = [shard_of[doc.key] for doc in plan["train"]]
            if plan["val"] is None:
                train, val = _cut(train, part.val_fraction)
            else:
                val = [shard_of[doc.key] for doc in plan["val"]]
            if not sum(s.length for s in train):
                what = f"The source '{part.name}'" if part.name else "The training corpus"
                raise UserError(f"{what} holds no text ({len(part.train)} files, no record with any text); give it "
                                "files with text in them.")
            splits[split_name("train", part.name)] = tuple(train)
            splits[split_name("val", part.name)] = tuple(val)
        if test_docs:
            splits["test"] = tuple(shard_of[doc.key] for doc in test_docs)
        return splits

    def _tokenizer(self, old: Optional[Manifest], train: list[tuple[float, list[Document]]]
                   ) -> tuple[Tokenizer, dict[str, Any]]:
        """The tokenizer (given, kept from the cache, or trained on a sample now) and its manifest record."""
        if self.given is not None:
            return self.given, {"file": None, "fingerprint": self.given.fingerprint(), "vocab_size": self.given.vocab_size}
        kept = self._kept_tokenizer(old)
        if kept is not None:
            return kept, dict(old.tokenizer)
        ranges, texts = tokenizer_sample(train, self.sample_bytes, self.special_tokens, self.utf8_errors)
        sampled = sum(r.size for r in ranges) + sum(len(t.encode("utf-8")) for group in texts for t in group)
        whole = sum(_planned_bytes(d) for _, docs in train for d in docs)
        compressed = any(d.input.kind in ("records", "stream") for _, docs in train for d in docs)
        of = f"{whole / 1e6:,.1f} MB of training files" if compressed else f"the {whole / 1e6:,.1f} MB training split"
        self.log(f"token cache: training a {self.vocab_size:,}-token tokenizer on {sampled / 1e6:,.1f} MB "
                 f"of text from {of} ({_processes(self.num_proc)})")
        try:
            vocab, merges = train_bpe_on_ranges(ranges, self.vocab_size, self.special_tokens, self.num_proc,
                                                progress=self.progress, utf8_errors=self.utf8_errors, texts=texts)
        except NotUTF8Error as e:
            raise not_utf8(e) from None
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

    def _reusable(self, old: Optional[Manifest], tok: Tokenizer, documents: dict[tuple, Document]
                  ) -> dict[tuple, Shard]:
        """The shards of `old` that still hold the tokens of a planned document, by document key."""
        fingerprint = tok.fingerprint()
        if old is None or old.tokenizer.get("fingerprint") != fingerprint:
            return {}
        by_key = {s.source.key: dataclasses.replace(s, span=None) for shards in old.splits.values() for s in shards
                  if s.source.kind != "tokens"}
        reusable: dict[tuple, Shard] = {}
        for key, doc in documents.items():
            shard = by_key.get(key) if doc.input.kind != "tokens" else None
            if shard is None or _shard_problem(self.folder, shard, fingerprint, tok.vocab_size):
                continue
            if self.verify_full and not self._shard_intact(shard):
                continue
            source = shard.source
            if doc.input.same_as(source.size, source.mtime_ns, source.version) and not self.verify_full:
                reusable[key] = shard
            elif not doc.input.remote and _hash(doc) == source.sha256:
                reusable[key] = dataclasses.replace(
                    shard, source=dataclasses.replace(source, size=doc.input.size, mtime_ns=doc.input.mtime_ns))
            else:
                self.log(f"token cache: {doc.input.path} changed; re-encoding its bytes {doc.start}..{doc.end}")
        return reusable

    def _shard_intact(self, shard: Shard) -> bool:
        """Whether a shard's bytes still hash to what was recorded when it was written (`verify="full"`);
        a shard written before hashes were recorded cannot be checked, and is kept, saying so."""
        if shard.sha256 is None:
            self.log(f"token cache: shard {shard.file} records no hash of its tokens (written by an older llm_lit), "
                     "so --data.verify full cannot check it; delete the cache folder to rebuild it with one.")
            return True
        path = shard.path(self.folder)
        if hash_range(str(path), 0, _stat(path)[0] or 0) == shard.sha256:
            return True
        self.log(f"token cache: shard {shard.file} does not match the hash recorded when it was written (its bytes "
                 "changed on disk); re-encoding it")
        return False

    def _encode(self, tok: Tokenizer, todo: list[tuple[str, Document]]) -> dict[tuple, Shard]:
        """Encode the documents into new shards (in parallel); on any error none of them is left."""
        outputs = [self.folder / _shard_name(label, i, doc) for i, (label, doc) in enumerate(todo)]
        inputs = [_text_input(doc) for _, doc in todo]
        sidecars: list[dict[str, Any]] = []
        timer = _SourceTimer(self.report, [self._source_of(doc) for _, doc in todo])
        try:
            sidecars = encode_inputs(tok, inputs, outputs, self.num_proc, self.progress, self.utf8_errors,
                                     atomic=False, replace=document_replacements(tok), on_written=timer.written)
            for (_, doc), sidecar in zip(todo, sidecars):  # as planned, as read, and as it is now
                if not doc.input.remote and not doc.input.stat == (sidecar["source_file_bytes"],
                                                                    sidecar["source_mtime_ns"]) == _stat(Path(doc.input.path)):
                    raise UserError(f"The corpus file '{doc.input.path}' changed while the token cache was being "
                                    "built; run again once nothing is writing to it.")
        except BaseException as e:
            for path in outputs:
                for p in (path, Path(f"{path}.json")):
                    p.unlink(missing_ok=True)
            if isinstance(e, NotUTF8Error):
                raise not_utf8(e) from None
            if isinstance(e, WriteError):
                raise UserError(f"Cannot write the token cache in '{self.folder}' ({e.reason}); free some space or "
                                "pass another --data.cache_dir (the cache is as it was before this run).") from None
            if isinstance(e, TokenizerError) and "changed while it was being encoded" in str(e):
                raise UserError(f"A corpus file changed while the token cache was being built ({e}); run again "
                                "once nothing is writing to it.") from None
            raise
        return {doc.key: _encoded_shard(output, doc, sidecar)
                for (_, doc), output, sidecar in zip(todo, outputs, sidecars)}

    def _source_of(self, doc: Document) -> str:
        for part in self.parts:
            if doc.input in part.train or doc.input in part.val:
                return part.name
        return "test"

    def _token_input(self, doc: Document, tok: Tokenizer, old: Optional[Manifest]) -> Shard:
        """A token file used as its own shard, after checking it was made by `tok` (ours) or that its ids fit
        `tok` (another tool's: read once, and again only when it changes)."""
        f = doc.input
        if f.origin == "llm_lit":
            sidecar = f.sidecar or {}
            if sidecar.get("tokenizer_fingerprint") != tok.fingerprint():
                raise UserError(f"The token file '{f.path}' was written by another tokenizer than "
                                "--data.tokenizer_path; re-encode it with that tokenizer (python -m tokenizer encode).")
            max_id = int(sidecar.get("max_id", int(sidecar.get("vocab_size", tok.vocab_size)) - 1))
            sha256 = sidecar.get("source_sha256")
        else:
            max_id = self._foreign_max_id(f, tok, old)
            sha256 = None
        source = Source(f.path, "tokens", doc.start, doc.end, f.size, f.mtime_ns, sha256, format=f.origin)
        return Shard(f.path, f.length, max_id, f.dtype, source, offset=f.offset)

    def _foreign_max_id(self, f: InputFile, tok: Tokenizer, old: Optional[Manifest]) -> int:
        """The largest id of another tool's token file (recorded, or read now); `UserError` beyond `tok`'s ids."""
        recorded = [s for shards in (old.splits.values() if old else ()) for s in shards
                    if s.source.path == f.path and s.source.kind == "tokens"]
        if recorded and f.same_as(recorded[0].source.size, recorded[0].source.mtime_ns, None):
            return recorded[0].max_id
        layout = _layout_of(f)
        top, where = largest_id(f.path, layout)
        if top >= tok.vocab_size:
            raise UserError(f"The token file '{f.path}' holds id {top} (token {where:,}), beyond the {tok.vocab_size:,} "
                            "ids of the tokenizer; pass the tokenizer that wrote it with --data.tokenizer_path "
                            "(and check --data.token_dtype).")
        return top

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


class _SourceTimer:
    """Seconds of encoding per source: the time from the previous token file's completion to each one's."""

    def __init__(self, report: BuildReport, sources: list[str]) -> None:
        self.report, self.sources = report, sources
        self.last = time.perf_counter()

    def written(self, index: int, sidecar: dict[str, Any]) -> None:
        now = time.perf_counter()
        name = self.sources[index]
        self.report.seconds[name] = self.report.seconds.get(name, 0.0) + now - self.last
        text = sidecar.get("source_text_bytes", sidecar.get("source_bytes", 0))
        self.report.text_bytes[name] = self.report.text_bytes.get(name, 0) + int(text or 0)
        self.last = now


def _cut(shards: list[Shard], val_fraction: float) -> tuple[list[Shard], list[Shard]]:
    """A source's shards cut into train and validation by tokens (`splits.token_cut`), with spans where a
    shard is read in part."""
    train, val = [], []
    for shard, (a, b) in zip(shards, token_cut([s.length for s in shards], val_fraction)):
        for ranges, out in ((a, train), (b, val)):
            if ranges[1] > ranges[0]:
                whole = ranges == (0, shard.length)
                out.append(shard if whole else dataclasses.replace(shard, span=ranges))
    return train, val


def _text_input(doc: Document) -> TextInput:
    if doc.input.kind == "text":
        return RangeInput(TextRange(doc.input.path, doc.start, doc.end))
    if doc.input.kind == "records":
        return RecordInput(doc.input.located(), doc.input.text_field)
    return StreamTextInput(doc.input.located())


def _layout_of(f: InputFile) -> Any:
    from llm_lit.data.formats.token_files import TokenLayout

    return TokenLayout(f.origin or "headerless", f.dtype, f.offset, f.length)


def _hash(doc: Document) -> str:
    """sha256 of what the document's shard was made from: its byte range (the whole file of a record file)."""
    if doc.input.kind == "records":
        return hash_file(doc.input.path)
    return hash_range(doc.input.path, doc.start, doc.end)


def hash_range(path: str, start: int, end: int) -> str:
    """sha256 hex digest of bytes `[start, end)` of a file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left and (chunk := f.read(min(_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _planned_bytes(doc: Document) -> int:
    return doc.end - doc.start if doc.input.kind == "text" else doc.input.size if doc.input.kind != "tokens" else 0


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


def _encoded_shard(output: Path, doc: Document, sidecar: dict[str, Any]) -> Shard:
    f = doc.input
    extra = {} if f.kind == "text" else {"format": f.format, "version": sidecar.get("source_version"),
                                         "records": sidecar.get("source_records"),
                                         "text_bytes": sidecar.get("source_text_bytes")}
    source = Source(f.path, f.kind, doc.start, doc.end, sidecar["source_file_bytes"], sidecar["source_mtime_ns"],
                    sidecar["source_sha256"], **extra)
    return Shard(output.name, sidecar["num_tokens"], sidecar["max_id"], sidecar["dtype"], source, _stat(output)[1],
                 sha256=sidecar.get("sha256"))


def _shard_name(label: str, index: int, doc: Document) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(doc.input.path).stem)[:40]
    return f"{label}-{index:05d}-{stem}-{secrets.token_hex(4)}.bin"


def _stat(path: Path) -> tuple[Optional[int], Optional[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def not_utf8(e: NotUTF8Error) -> UserError:
    """The one sentence for a corpus file that is not UTF-8."""
    line = f", line {e.line}" if e.line else ""
    return UserError(f"The corpus file '{e.path}' is not UTF-8 text (bad byte {e.byte:#04x} at byte offset {e.offset}"
                     f"{line}); convert it to UTF-8 (e.g. iconv -t UTF-8) or pass --data.utf8_errors replace to "
                     "replace invalid bytes with U+FFFD.")


def _processes(count: int) -> str:
    """'1 process', '2 processes'."""
    return f"{count} process{'' if count == 1 else 'es'}"
