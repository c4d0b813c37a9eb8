"""Every corpus format the token cache reads gives the ids of its equivalent `.txt` (its records joined by
the end-of-text token): JSONL (plain, gzip, zstandard), Parquet, Arrow and `datasets.save_to_disk`
folders, globs, and other tools' token files; records never merge without a separator between them."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from format_helpers import EOT, FORMATS, paragraphs, write_records
from llm_lit.data.formats.inputs import RecordInput
from llm_lit.data.formats.locate import Located
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError
from tokenizer import Tokenizer, train_bpe
from tokenizer.token_file import document_separator, encode_inputs, joining_text

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
RECORDS = paragraphs(TEXT[:120_000]) + ["Ça, señor — “naïve” café.", "<|endoftext|> inside a record"]
VAL = paragraphs(TEXT[120_000:140_000])


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "corpus.txt"
    path.write_text(TEXT[:200_000], encoding="utf-8")
    vocab, merges = train_bpe(path, 300, [EOT])
    return Tokenizer(vocab, merges, [EOT])


def _prepare(train, val, folder, **kwargs):
    return prepare_token_cache([str(p) for p in train], [str(p) for p in val] if val else None, 0.1, 300, [EOT],
                               folder / "cache", num_proc=kwargs.pop("num_proc", 1), **kwargs)


def _ids(cache, split):
    return np.asarray(cache.split(split), dtype=np.int64).tolist()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_gives_the_ids_of_the_equivalent_txt(fmt, tmp_path, tok):
    train, val = write_records(RECORDS, tmp_path / "train", fmt), write_records(VAL, tmp_path / "val", fmt)
    (tmp_path / "train.txt").write_text(EOT.join(RECORDS), encoding="utf-8")
    (tmp_path / "val.txt").write_text(EOT.join(VAL), encoding="utf-8")
    ours = _prepare([train], [val], tmp_path / "ours", tokenizer=tok, num_proc=2)
    reference = _prepare([tmp_path / "train.txt"], [tmp_path / "val.txt"], tmp_path / "txt", tokenizer=tok)
    for split in ("train", "val"):
        assert _ids(ours, split) == _ids(reference, split)
    shard = ours.manifest.splits["train"][0]
    assert len(ours.manifest.splits["train"]) == 1  # one shard per input file, its records inside
    assert shard.source.records == len(RECORDS)
    assert shard.source.text_bytes == sum(len(r.encode("utf-8")) for r in RECORDS)
    assert shard.source.sha256 and shard.source.format == ("arrow" if fmt == "dataset" else fmt)


@pytest.mark.parametrize("fmt", ["jsonl.zst", "parquet"])
def test_a_tokenizer_trained_on_records_is_the_one_the_equivalent_txt_trains(fmt, tmp_path):
    train, val = write_records(RECORDS, tmp_path / "train", fmt), write_records(VAL, tmp_path / "val", fmt)
    (tmp_path / "train.txt").write_text(EOT.join(RECORDS), encoding="utf-8")
    (tmp_path / "val.txt").write_text(EOT.join(VAL), encoding="utf-8")
    ours = _prepare([train], [val], tmp_path / "ours")
    reference = _prepare([tmp_path / "train.txt"], [tmp_path / "val.txt"], tmp_path / "txt")
    assert Tokenizer.load(ours.tokenizer_path).merges == Tokenizer.load(reference.tokenizer_path).merges
    assert _ids(ours, "train") == _ids(reference, "train")


def test_without_validation_files_the_last_tenth_of_the_tokens_is_held_out(tmp_path, tok):
    train = write_records(RECORDS, tmp_path / "train", "parquet")
    cache = _prepare([train], None, tmp_path, tokenizer=tok)
    whole = tok.encode(EOT.join(RECORDS))
    assert _ids(cache, "train") + _ids(cache, "val") == whole  # one shard, read in part by each split
    assert len(_ids(cache, "val")) == len(whole) - int(len(whole) * 0.9)
    assert [s.span for s in cache.manifest.splits["train"]] == [(0, int(len(whole) * 0.9))]


def test_a_glob_reads_its_files_in_sorted_order_and_mixes_formats(tmp_path, tok):
    thirds = [RECORDS[:300], RECORDS[300:600], RECORDS[600:]]
    (tmp_path / "data").mkdir()
    for name, fmt, records in (("b", "jsonl.gz", thirds[1]), ("a", "parquet", thirds[0]), ("c", "jsonl", thirds[2])):
        write_records(records, tmp_path / "data" / name, fmt)
    (tmp_path / "v.txt").write_text(EOT.join(VAL), encoding="utf-8")
    cache = _prepare([tmp_path / "data" / "*"], [tmp_path / "v.txt"], tmp_path, tokenizer=tok)
    assert [Path(s.source.path).name for s in cache.manifest.splits["train"]] == ["a.parquet", "b.jsonl.gz", "c.jsonl"]
    assert _ids(cache, "train") == tok.encode(EOT.join(RECORDS))  # files joined by the separator, as records are


def test_text_and_record_files_without_validation_files_are_cut_by_tokens(tmp_path, tok):
    (tmp_path / "a.txt").write_text(TEXT[200_000:260_000], encoding="utf-8")
    records = write_records(RECORDS, tmp_path / "b", "jsonl")
    cache = _prepare([tmp_path / "a.txt", records], None, tmp_path, tokenizer=tok)
    whole = tok.encode(TEXT[200_000:260_000]) + tok.encode(EOT + EOT.join(RECORDS))
    train, val = _ids(cache, "train"), _ids(cache, "val")
    assert train + val == whole and len(val) == len(whole) - int(len(whole) * 0.9)


def test_token_files_of_llm_c_and_nanogpt_are_read_in_place(tmp_path, tok):
    ids = np.asarray(tok.encode(TEXT[:80_000]), dtype=np.uint16)
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (20240520, 1, len(ids))
    (tmp_path / "llmc.bin").write_bytes(header.tobytes() + ids.tobytes())
    ids.tofile(tmp_path / "nanogpt.bin")
    (tmp_path / "val.txt").write_text(TEXT[80_000:90_000], encoding="utf-8")
    for name in ("llmc.bin", "nanogpt.bin"):
        cache = _prepare([tmp_path / name], [tmp_path / "val.txt"], tmp_path / f"cache-{name}", tokenizer=tok,
                         token_dtype="uint16")
        assert _ids(cache, "train") == ids.tolist()
        assert cache.manifest.splits["train"][0].file == str(tmp_path / name)  # used in place
    with pytest.raises(UserError, match=r"'.*nanogpt.bin' has no sidecar .* and no llm.c header; if it is a headerless "
                                        r"array of token ids .* pass --data.token_dtype uint16"):
        _prepare([tmp_path / "nanogpt.bin"], [tmp_path / "val.txt"], tmp_path / "no-dtype", tokenizer=tok)
    big = ids.copy()
    big[1234] = 300
    big.tofile(tmp_path / "beyond.bin")
    with pytest.raises(UserError, match=r"The token file '.*beyond.bin' holds id 300 \(token 1,234\), beyond the 300 "
                                        r"ids of the tokenizer; pass the tokenizer that wrote it"):
        _prepare([tmp_path / "beyond.bin"], [tmp_path / "val.txt"], tmp_path / "beyond", tokenizer=tok,
                 token_dtype="uint16")


def test_joining_text_is_the_end_of_text_token_only_where_joining_is_exact():
    assert joining_text([EOT]) == EOT
    assert joining_text([EOT, "<|pad|>"]) == EOT
    assert joining_text([]) is None
    assert joining_text([EOT, "x" + EOT]) is None  # contains it
    assert joining_text([EOT, "text|>!"]) is None  # overlaps its end
    assert joining_text(["abab"]) is None  # an occurrence could start inside a document


_PIECES = st.sampled_from(["a", "b", " ", "x", "\n", "\n\n", "é", "<|endof", "text|>", EOT, "<", "|>", "The", " cat"])
_RECORDS = st.lists(st.lists(_PIECES, max_size=12).map("".join), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(records=_RECORDS, specials=st.sampled_from([[EOT], [], [EOT, "x" + EOT], [EOT, "text|>x"]]))
def test_records_never_merge_without_a_separator(tok, records, specials):
    """Each record is encoded as a text of its own and the separator's ids stand between two records, whatever
    their lengths and edges (partial special tokens, whitespace) and whatever the special tokens."""
    tokenizer = Tokenizer(tok.vocab, tok.merges, specials)
    separator = document_separator(tokenizer)
    expected: list[int] = []
    for i, record in enumerate(records):
        expected += (separator if i else []) + tokenizer.encode(record)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.jsonl"
        path.write_text("".join(json.dumps({"text": r}) + "\n" for r in records), encoding="utf-8")
        stat = path.stat()
        source = RecordInput(Located(str(path), "jsonl", stat.st_size, stat.st_mtime_ns), "text")
        sidecar = encode_inputs(tokenizer, [source], [Path(folder) / "r.bin"])[0]
        got = np.fromfile(Path(folder) / "r.bin", dtype=sidecar["dtype"]).tolist()
    assert got == expected
    assert sidecar["source_records"] == len(records)
