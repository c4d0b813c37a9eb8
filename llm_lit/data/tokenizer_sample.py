"""The text a tokenizer is trained on: a sample of every source's training split, in proportion to the
sources' weights.

Each source gets `sample_bytes * weight / total weight` (all of it when there is one source), shared
among its files by size. Text files give evenly spread exact-cut blocks (`tokenizer.sample`), as
for a plain `train_files` list; a record file gives its first records, a remote text file its first
blocks, up to their share. A source smaller than its share is used whole, so a corpus no larger than
`sample_bytes` trains on all of its training text. (A source whose validation part is cut from its
tokens after encoding, having no validation files, is sampled from the start of each file: when it is
smaller than its share, its validation text is in the sample too; give it val_files to keep them apart.)
"""

from __future__ import annotations

from typing import Sequence

from llm_lit.data.formats.inputs import RecordInput, StreamTextInput
from llm_lit.data.splits import Document
from tokenizer.pretokenize import TextRange, decode_utf8
from tokenizer.sample import sample_ranges

#: Text per counting task when records are sampled.
_GROUP_BYTES = 1 << 20


def tokenizer_sample(parts: Sequence[tuple[float, Sequence[Document]]], sample_bytes: int,
                     special_tokens: Sequence[str], utf8_errors: str = "strict"
                     ) -> tuple[list[TextRange], list[list[str]]]:
    """The sample of `(weight, training documents)` per source: byte ranges of text files, and groups of
    texts read from record files and remote text (each text a text of its own)."""
    total_weight = sum(weight for weight, _ in parts)
    ranges: list[TextRange] = []
    texts: list[list[str]] = []
    specials = [s.encode("utf-8") for s in special_tokens]
    for weight, docs in parts:
        budget = sample_bytes if len(parts) == 1 else int(sample_bytes * weight / total_weight)
        text_docs = [d for d in docs if d.input.kind == "text"]
        read_docs = [d for d in docs if d.input.kind in ("records", "stream")]
        text_size = sum(d.end - d.start for d in text_docs)
        read_size = sum(d.input.size for d in read_docs)
        whole = text_size + read_size
        if text_docs:
            share = budget if not read_docs else budget * text_size // max(whole, 1)
            ranges += sample_ranges([TextRange(d.input.path, d.start, d.end) for d in text_docs], share, special_tokens)
        for doc in read_docs:
            share = max(1, budget * doc.input.size // max(whole, 1))
            texts += _read_sample(doc, share, specials, utf8_errors)
    return ranges, texts


def _read_sample(doc: Document, share: int, specials: list[bytes], utf8_errors: str) -> list[list[str]]:
    """About `share` bytes of text from the start of a record file or a remote text file, in groups."""
    groups: list[list[str]] = [[]]
    size = group_size = 0
    if doc.input.kind == "records":
        pieces = RecordInput(doc.input.located(), doc.input.text_field).first_texts(share)
    else:
        stream = StreamTextInput(doc.input.located())
        pieces = (decode_utf8(p.payload, doc.input.path, p.offset, utf8_errors) for p in stream.pieces(specials, 1 << 20))
    for text in pieces:
        n = len(text.encode("utf-8"))
        groups[-1].append(text)
        size += n
        group_size += n
        if size >= share:
            break
        if group_size >= _GROUP_BYTES:
            groups.append([])
            group_size = 0
    return [g for g in groups if g]
