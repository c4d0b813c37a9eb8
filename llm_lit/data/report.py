"""What a token cache holds, per source: files, documents, bytes of text, tokens, and (when this
process built it) how fast each source was encoded. `llm_lit prepare` prints it as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llm_lit.data.sources import split_name
from llm_lit.data.tokens import TokenCache


@dataclass(frozen=True)
class SourceStats:
    """One source of a cache (or its test split): `text_bytes` is None when it is all token files, and
    `seconds` None when this process encoded none of it."""

    name: str
    files: int
    documents: int
    text_bytes: Optional[int]
    tokens: int
    seconds: Optional[float] = None
    encoded_bytes: int = 0

    @property
    def bytes_per_token(self) -> Optional[float]:
        """Bytes of text per token (the tokenizer's compression on this source)."""
        return self.text_bytes / self.tokens if self.text_bytes and self.tokens else None

    @property
    def mb_per_s(self) -> Optional[float]:
        """MB of text encoded per second in this build."""
        return self.encoded_bytes / 1e6 / self.seconds if self.seconds and self.encoded_bytes else None


def source_stats(cache: TokenCache) -> list[SourceStats]:
    """Each source's figures (training and validation splits together), then the test split's if there is one."""
    rows = []
    names = cache.source_names
    groups = [(name or "corpus", [split_name("train", name), split_name("val", name)], name) for name in names]
    if "test" in cache.manifest.splits:
        groups.append(("test", ["test"], "test"))
    report = cache.report
    for label, splits, key in groups:
        shards = {s.file: s for split in splits for s in cache.manifest.splits.get(split, ())}
        sources = {}
        for shard in shards.values():
            sources.setdefault(shard.source.path, []).append(shard)
        documents = text = tokens = 0
        all_tokens = True
        for path, held in sources.items():
            first = held[0].source
            documents += first.records if first.records is not None else 1
            if first.kind == "tokens":
                tokens += sum(s.source.end - s.source.start for s in held)
                continue
            all_tokens = False
            tokens += sum(s.num_tokens for s in held)
            text += sum((s.source.text_bytes if s.source.text_bytes is not None else s.source.end - s.source.start)
                        for s in held)
        seconds = report.seconds.get(key) if report is not None else None
        encoded = report.text_bytes.get(key, 0) if report is not None else 0
        rows.append(SourceStats(label, len(sources), documents, None if all_tokens else text, tokens, seconds, encoded))
    return rows


def format_table(rows: list[SourceStats]) -> str:
    """The rows as a text table: source, files, documents, MB of text, tokens, bytes per token, MB/s, time."""
    header = ("source", "files", "documents", "MB text", "tokens", "bytes/token", "MB/s", "time")
    lines = [header]
    for r in rows:
        lines.append((r.name, f"{r.files:,}", f"{r.documents:,}",
                      f"{r.text_bytes / 1e6:,.1f}" if r.text_bytes is not None else "-", f"{r.tokens:,}",
                      f"{r.bytes_per_token:.2f}" if r.bytes_per_token else "-",
                      f"{r.mb_per_s:,.1f}" if r.mb_per_s else "-",
                      f"{r.seconds:,.1f} s" if r.seconds is not None else "cached"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)
