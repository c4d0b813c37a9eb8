"""Helpers for the tokenizer tests: corpus paths, exact file writing, and a naive reference trainer."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import regex


REPO = Path(__file__).resolve().parents[2]
SHAKESPEARE = REPO / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt"
#: The public corpora of docs/results.md, for the slow full-corpus checks: the folder LLM_LIT_CORPORA names, else a
#: `shared/data` folder beside the repository.
SHARED_DATA = Path(os.environ.get("LLM_LIT_CORPORA") or REPO.parent / "shared" / "data")
EOT = "<|endoftext|>"

# An independent copy of the GPT-2 pattern, so the tests do not trust the package's.
GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def write_text(path: Path, text: str) -> Path:
    """Write `text` as UTF-8 bytes exactly (no newline translation) and return the path."""
    path.write_bytes(text.encode("utf-8"))
    return path


def naive_train(text: str, vocab_size: int, special_tokens: list[str]) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """The obviously-correct slow BPE trainer: recount every pair at every step."""
    pieces = [text]
    if special_tokens:
        alternatives = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
        pieces = regex.split(alternatives, text)
    words: Counter = Counter()
    for piece in pieces:
        for pre in GPT2_SPLIT.findall(piece):
            words[tuple(bytes([b]) for b in pre.encode("utf-8"))] += 1
    vocab = {i: bytes([i]) for i in range(256)}
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    merges = []
    while len(vocab) < vocab_size:
        counts: Counter = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] += n
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], p))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        merged: Counter = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return vocab, merges
