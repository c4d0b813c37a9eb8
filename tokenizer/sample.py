"""An evenly spread sample of a corpus, cut at exact boundaries, for training a tokenizer.

BPE merges depend on pre-token counts; past a few tens of MB of text those counts change
little in proportion, so training on a sample bounds the time and memory of tokenizer
training however large the corpus is. The sample is `ceil(sample_bytes / block_bytes)`
blocks of about `block_bytes`, started at evenly spaced points of the corpus (the ranges
one after another) and cut at exact pre-token boundaries (see `pretokenize.exact_blocks`),
so every pre-token inside a block is one the whole corpus has. A corpus no larger than
`sample_bytes` is used whole, which gives exactly the merges of training on all of it.
"""

from __future__ import annotations

import math
from typing import Sequence

from .pretokenize import TextRange, exact_blocks, next_cut

#: Bytes per sampled block: small enough to spread the sample over many places of the corpus.
SAMPLE_BLOCK_BYTES = 256 << 10


def sample_ranges(ranges: Sequence[TextRange], sample_bytes: int, special_tokens: Sequence[str] = (),
                  block_bytes: int = SAMPLE_BLOCK_BYTES) -> list[TextRange]:
    """About `sample_bytes` of the ranges, as evenly spread exact-cut blocks (all of them if they are no larger)."""
    total = sum(r.size for r in ranges)
    if total <= sample_bytes:
        return list(ranges)
    block_bytes = max(1, min(block_bytes, sample_bytes))
    count = math.ceil(sample_bytes / block_bytes)
    specials = [s.encode("utf-8") for s in special_tokens]
    picked: list[TextRange] = []
    first = 0  # corpus offset where ranges[index] starts
    index = 0
    for k in range(count):
        at = k * total // count
        while at >= first + ranges[index].size:
            first += ranges[index].size
            index += 1
        source = ranges[index]
        pos = source.start + at - first
        if picked and picked[-1].path == source.path and source.start <= picked[-1].end:
            pos = max(pos, picked[-1].end)  # blocks never overlap
        block = _block_at(source, pos, block_bytes, specials) if pos < source.end else None
        if block is not None:
            picked.append(block)
    return picked


def _block_at(source: TextRange, pos: int, block_bytes: int, specials: list[bytes]) -> TextRange | None:
    """The exact block of about `block_bytes` starting at the first exact boundary at or after `pos` in `source`."""
    with open(source.path, "rb") as f:
        start = source.start if pos == source.start else next_cut(f, pos, source.end, specials)
        if start == -1:
            return None
        a, b = next(exact_blocks(f, start, source.end, block_bytes, specials))
    return TextRange(source.path, a, b)
