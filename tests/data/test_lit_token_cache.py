"""The sharded token cache: splits byte-exact with the previous single-file cache, one shard per document,
pre-tokenized inputs, a tokenizer trained on a sample, updates that re-encode only what changed, and a
warm start that reads no corpus byte."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from format_helpers import make_unreadable
from llm_lit.data import TextDataModule
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError
from tokenizer import Tokenizer, train_bpe
from tokenizer.__main__ import main as tokenizer_main

EOT = "<|endoftext|>"
TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
DEBUG_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "debug.yaml"


def _previous_cache(paths: list[Path], vocab_size: int, tmp_path: Path, fraction: float = 0.1):
    """What the previous single-file cache held: the files joined by <|endoftext|>, cut at the last `fraction`
    of bytes (moved back to a character start), a tokenizer trained on the first part, both parts encoded."""
    data = EOT.encode().join(p.read_bytes() for p in paths)
    cut = int(len(data) * (1 - fraction))
    while (data[cut] & 0xC0) == 0x80:
        cut -= 1
    (tmp_path / "previous_train.txt").write_bytes(data[:cut])
    vocab, merges = train_bpe(tmp_path / "previous_train.txt", vocab_size, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    return tok, tok.encode(data[:cut].decode()), tok.encode(data[cut:].decode()), cut


def _prepare(train, tmp_path, val=None, vocab_size=300, **kwargs):
    return prepare_token_cache([str(p) for p in train], [str(p) for p in val] if val else None, 0.1, vocab_size,
                               [EOT], tmp_path / "cache", **kwargs)


def test_the_bundled_corpus_splits_and_encodes_exactly_as_before(tmp_path):
    cache = _prepare([BUNDLED_CORPUS], tmp_path, num_proc=2)
    tok, train, val, cut = _previous_cache([BUNDLED_CORPUS], 300, tmp_path)
    assert cut == int(len(TEXT) * 0.9)  # ASCII: nanoGPT's 90/10 split
    assert Tokenizer.load(cache.tokenizer_path).merges == tok.merges
    assert cache.split("train").tolist() == train and cache.split("val").tolist() == val


@pytest.fixture()
def three_files(tmp_path) -> list[Path]:
    """Three files, the last with non-ASCII text around where the 90% cut falls."""
    texts = [TEXT[:40_000], TEXT[40_000:70_000], TEXT[70_000:75_000] + "Ça, señor — “naïve” café.\n" * 300]
    paths = []
    for i, t in enumerate(texts):
        paths.append(tmp_path / f"part{i}.txt")
        paths[-1].write_text(t, encoding="utf-8")
    return paths


def test_a_multi_file_corpus_splits_and_encodes_exactly_as_before(three_files, tmp_path):
    cache = _prepare(three_files, tmp_path)
    tok, train, val, cut = _previous_cache(three_files, 300, tmp_path)
    sizes = [p.stat().st_size for p in three_files]
    assert sizes[0] + sizes[1] + 2 * len(EOT) < cut < sum(sizes) + 2 * len(EOT)  # the cut falls inside the last file
    assert Tokenizer.load(cache.tokenizer_path).merges == tok.merges
    assert cache.split("train").tolist() == train and cache.split("val").tolist() == val
    # one shard per document: three files in train (the last one's head), the last one's tail in val
    assert [s.source.path for s in cache.manifest.splits["train"]] == [str(p) for p in three_files]
    assert len(cache.manifest.splits["val"]) == 1
    assert not list((tmp_path / "cache").rglob("*.txt"))  # no copy of the corpus was written


def test_windows_of_the_datamodule_span_files(three_files, tmp_path):
    dm = TextDataModule(train_files=[str(p) for p in three_files], vocab_size=300, context_length=64,
                        cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    dm.setup("fit")
    shards = [np.asarray(s.open(dm.cache.folder), dtype=np.int64) for s in dm.cache.manifest.splits["train"]]
    eot = dm.tokenizer.token_to_id(EOT)
    whole = np.concatenate([shards[0], [eot], shards[1], [eot], shards[2]])
    assert np.array_equal(np.asarray(dm.train_tokens, dtype=np.int64), whole)
    first_boundary = len(shards[0])
    rows = dm.train_tokens.gather(np.array([first_boundary - 10, 0]), 65)
    assert rows[0].tolist() == whole[first_boundary - 10:first_boundary + 55].tolist() and rows[0][10] == eot


def test_a_corpus_under_the_sample_size_trains_on_all_of_it_and_a_larger_one_on_a_sample(three_files, tmp_path):
    whole = _prepare(three_files, tmp_path / "whole", tokenizer_sample_bytes=10**9)
    small = _prepare(three_files, tmp_path / "sampled", tokenizer_sample_bytes=20_000)
    tok, *_ = _previous_cache(three_files, 300, tmp_path)
    assert Tokenizer.load(whole.tokenizer_path).merges == tok.merges
    assert 20_000 <= small.manifest.tokenizer["trained_on_bytes"] < 40_000
    assert Tokenizer.load(small.tokenizer_path).merges != tok.merges


def test_validation_files_and_pre_tokenized_inputs(three_files, tmp_path):
    text_cache = _prepare(three_files[:2], tmp_path / "text", val=three_files[2:])
    tok_path = text_cache.tokenizer_path
    bins = []
    for p in three_files:
        bins.append(tmp_path / f"{p.stem}.bin")
        assert tokenizer_main(["encode", "--tokenizer", str(tok_path), "--input", str(p), "--output", str(bins[-1]),
                               "--quiet", "--processes", "2"]) == 0
    given = Tokenizer.load(tok_path)
    mixed = _prepare([bins[0], three_files[1]], tmp_path / "mixed", val=[bins[2]], tokenizer=given)
    for split in ("train", "val"):
        assert mixed.split(split).tolist() == text_cache.split(split).tolist()
    assert mixed.manifest.splits["train"][0].file == str(bins[0])  # used in place, not copied
    # all pre-tokenized, no validation files: the last 10% of the tokens
    tokens_only = _prepare(bins, tmp_path / "tokens", tokenizer=given)
    total = sum(len(np.fromfile(b, dtype=np.uint16)) for b in bins)
    assert abs(len(tokens_only.split("val")) - total * 0.1) < 2


def _shard_files(cache) -> dict[str, list[str]]:
    return {name: [s.file for s in shards] for name, shards in cache.manifest.splits.items()}


def test_a_changed_file_re_encodes_its_shard_only_and_keeps_the_tokenizer(three_files, tmp_path, capsys):
    val = [three_files[2]]
    before = _prepare(three_files[:2], tmp_path, val=val, progress=True)
    tokenizer_stamp = before.tokenizer_path.stat().st_mtime_ns
    capsys.readouterr()
    # same bytes, newer mtime: re-hashed, nothing re-encoded
    os.utime(three_files[0], ns=(0, three_files[0].stat().st_mtime_ns + 10**9))
    touched = _prepare(three_files[:2], tmp_path, val=val, progress=True)
    assert _shard_files(touched) == _shard_files(before) and "re-encoding" not in capsys.readouterr().err
    # other bytes in the second file: its shard alone is re-encoded, with the same tokenizer
    edited = TEXT[100_000:130_000]
    three_files[1].write_text(edited, encoding="utf-8")
    after = _prepare(three_files[:2], tmp_path, val=val, progress=True)
    err = capsys.readouterr().err
    assert f"{three_files[1]} changed; re-encoding" in err and "1 of 3 documents to encode" in err
    old, new = _shard_files(before), _shard_files(after)
    assert new["train"][0] == old["train"][0] and new["val"] == old["val"] and new["train"][1] != old["train"][1]
    assert after.tokenizer_path.stat().st_mtime_ns == tokenizer_stamp
    tok = Tokenizer.load(after.tokenizer_path)
    expected = tok.encode(three_files[0].read_text()) + [tok.token_to_id(EOT)] + tok.encode(edited)
    assert after.split("train").tolist() == expected
    assert not (tmp_path / "cache" / after.folder.name / old["train"][1]).exists()  # the replaced shard is gone


def test_a_same_size_edit_with_the_old_mtime_is_trusted_unless_verify_full(three_files, tmp_path):
    val = [three_files[2]]
    before = _prepare(three_files[:2], tmp_path, val=val)
    stat = three_files[1].stat()
    three_files[1].write_bytes(three_files[1].read_bytes().replace(b"the", b"THE"))
    os.utime(three_files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _prepare(three_files[:2], tmp_path, val=val).manifest == before.manifest  # trusted by size and mtime
    verified = _prepare(three_files[:2], tmp_path, val=val, verify="full")
    assert _shard_files(verified)["train"][1] != _shard_files(before)["train"][1]
    assert _shard_files(verified)["train"][0] == _shard_files(before)["train"][0]
    tok = Tokenizer.load(verified.tokenizer_path)
    assert np.asarray(verified.manifest.splits["train"][1].open(verified.folder)).tolist() == \
        tok.encode(three_files[1].read_text())


def test_the_cache_of_the_previous_format_is_named_in_one_line(three_files, tmp_path, capsys):
    folder = _prepare(three_files, tmp_path).folder
    old = folder.parent / f"part0-{'0' * 16}"  # what the previous version wrote: one train.bin, no manifest
    old.mkdir()
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        (old / name).write_bytes(b"\0\0")
    _prepare(three_files, tmp_path, vocab_size=310, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "previous single-file format" in line]
    assert len(lines) == 1 and str(old) in lines[0] and "delete the old folder" in lines[0]


def _fitted(three_files, tmp_path) -> tuple[dict, TextDataModule]:
    """The settings of a fit over `three_files` (cache in tmp_path/cache), and its DataModule, prepared and set up."""
    settings = dict(train_files=[str(p) for p in three_files], vocab_size=300, context_length=32,
                    cache_dir=str(tmp_path / "cache"))
    fit = TextDataModule(**settings)
    fit.prepare_data()
    fit.setup("fit")
    return settings, fit


def test_warm_start_reads_no_corpus_byte(three_files, tmp_path, monkeypatch):
    settings, first = _fitted(three_files, tmp_path)
    corpus = {str(p) for p in three_files}
    opened = make_unreadable(monkeypatch, three_files)
    warm = TextDataModule(**settings)
    warm.prepare_data()
    warm.setup("fit")
    assert np.array_equal(np.asarray(warm.val_tokens), np.asarray(first.val_tokens))
    assert not corpus & set(opened)
    assert sum(p.endswith("manifest.json") for p in opened) == 1  # setup reused what prepare_data read


def test_warm_fit_starts_with_the_corpus_unreadable(three_files, tmp_path, monkeypatch, capsys):
    from llm_lit.commands.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", "[" + ",".join(str(p) for p in three_files) + "]",
            "--trainer.max_steps", "2", "--model.optimizer.warmup_steps", "1", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
            "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
            "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]"]
    assert main(args) == 0
    assert "encode [" in capsys.readouterr().err  # the cold start showed its progress
    make_unreadable(monkeypatch, three_files)
    assert main(args) == 0
    assert "token cache" not in capsys.readouterr().err  # nothing was built


def test_num_proc_below_one_is_refused():
    with pytest.raises(UserError, match=r"num_proc must be a whole number >= 1 \(got 0\); pass --data.num_proc 1"):
        TextDataModule(num_proc=0)


def _evaluation(stage: str, tokenizer, settings: dict, **more) -> TextDataModule:
    """A DataModule as `llm_lit validate|test --ckpt_path` makes it: the checkpoint's tokenizer, a Trainer at `stage`."""
    from types import SimpleNamespace

    dm = TextDataModule(**settings, **more)
    dm.use_tokenizer(tokenizer)
    dm.trainer = SimpleNamespace(testing=stage == "test", validating=stage == "validate", predicting=False)
    return dm


def test_test_from_a_checkpoint_encodes_its_test_files_only_once(three_files, tmp_path, monkeypatch):
    settings, fit = _fitted(three_files, tmp_path)
    (fit_folder,) = (tmp_path / "cache").iterdir()
    hamlet, lear = tmp_path / "hamlet.txt", tmp_path / "lear.txt"
    hamlet.write_text(TEXT[80_000:84_000], encoding="utf-8")
    lear.write_text(TEXT[90_000:93_000], encoding="utf-8")
    opened = make_unreadable(monkeypatch, three_files)  # the training corpus is never read for a test split

    test = _evaluation("test", fit.tokenizer, settings, test_files=str(hamlet))
    test.prepare_data()
    test.setup("test")
    assert np.asarray(test.test_tokens[:]).tolist() == fit.tokenizer.encode(hamlet.read_text(encoding="utf-8"))
    assert test.cache.report is not None and not {str(p) for p in three_files} & set(opened)
    folders = sorted((tmp_path / "cache").iterdir())
    (test_folder,) = [f for f in folders if f != fit_folder]
    assert test_folder.name.startswith("hamlet-test-")
    assert not list(test_folder.glob("train-*")) and not list(test_folder.glob("val-*"))

    again = _evaluation("test", fit.tokenizer, settings, test_files=str(hamlet))
    again.prepare_data()
    again.setup("test")
    assert again.cache.report is None and again.cache.folder == test_folder  # reused, nothing encoded

    other = _evaluation("test", fit.tokenizer, settings, test_files=[str(lear)])
    other.prepare_data()
    other.setup("test")
    (lear_folder,) = set((tmp_path / "cache").iterdir()) - set(folders)
    assert sorted(p.name.split("-")[0] for p in lear_folder.glob("*.bin")) == ["test"]  # that file alone


def test_validate_from_a_checkpoint_finds_fits_cache_whatever_its_test_files(three_files, tmp_path):
    settings, fit = _fitted(three_files, tmp_path)
    (tmp_path / "t.txt").write_text(TEXT[80_000:84_000], encoding="utf-8")
    validate = _evaluation("validate", fit.tokenizer, settings, test_files=[str(tmp_path / "t.txt")])
    validate.prepare_data()
    validate.setup("validate")
    assert validate.cache.folder == fit.cache.folder and validate.cache.report is None
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no new folder, no test split encoded to validate
    assert np.array_equal(np.asarray(validate.val_tokens), np.asarray(fit.val_tokens))


@pytest.mark.slow
def test_the_bundled_corpus_gives_at_most_its_recorded_merges():
    from llm_lit.data.tokens import BUNDLED_MAX_MERGES

    vocab, merges = train_bpe(BUNDLED_CORPUS, 60_000, [EOT])
    assert len(merges) == BUNDLED_MAX_MERGES and len(vocab) == 256 + BUNDLED_MAX_MERGES + 1
