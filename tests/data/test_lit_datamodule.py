"""TextDataModule: token cache built once and rebuilt when untrustworthy, windows in range and
exact, data position restored from state, prompts, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from llm_lit.data import TextDataModule
from llm_lit.data.datasets import IGNORE_INDEX
from llm_lit.data.splits import inspect_inputs, plan_splits
from llm_lit.data.token_array import TokenArray
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.errors import UserError

CORPUS = BUNDLED_CORPUS.read_text(encoding="utf-8")[:60_000]


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def _datamodule(corpus, tmp_path, **overrides) -> TextDataModule:
    settings = dict(train_files=[str(corpus)], vocab_size=300, context_length=16, batch_size=4,
                    val_batch_size=8, cache_dir=str(tmp_path / "cache"))
    settings.update(overrides)
    dm = TextDataModule(**settings)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _split_texts(path, fraction=0.1) -> tuple[str, str]:
    plan = plan_splits(inspect_inputs([path], "corpus"), [], fraction, len("<|endoftext|>"))
    data = path.read_bytes()
    (train,), (val,) = plan["train"], plan["val"]
    return data[train.start:train.end].decode(), data[val.start:val.end].decode()


def test_split_is_nanogpt_90_10_for_ascii(corpus):
    n = len(CORPUS)
    assert _split_texts(corpus) == (CORPUS[:int(n * 0.9)], CORPUS[int(n * 0.9):])


def test_split_never_cuts_a_utf8_character(tmp_path):
    src = tmp_path / "u.txt"
    src.write_text("é" * 1001, encoding="utf-8")  # 2 bytes each: the 90% byte offset falls mid-character
    a, b = _split_texts(src)
    assert a + b == "é" * 1001 and len(a) == 900


def test_windows_are_in_range_and_validation_covers_the_split_once(corpus, tmp_path):
    dm = _datamodule(corpus, tmp_path)
    assert dm.tokenizer.vocab_size == 300 and isinstance(dm.train_tokens, TokenArray)
    assert all(isinstance(p, np.memmap) for p in dm.train_tokens.parts)
    for _, (x, y) in zip(range(5), dm.train_dataloader()):
        assert x.shape == (4, 16) and x.min() >= 0 and x.max() < 300
        assert torch.equal(x[:, 1:], y[:, :-1])
    targets = [y[y != IGNORE_INDEX] for _, y in dm.val_dataloader()]
    assert np.array_equal(torch.cat(targets).numpy(), np.asarray(dm.val_tokens[1:], dtype=np.int64))
    # the val split decodes back to the corpus' last 10%
    assert dm.tokenizer.decode(dm.val_tokens.tolist()) == CORPUS[int(len(CORPUS) * 0.9):]


def test_training_continues_from_the_restored_position(corpus, tmp_path):
    dm = _datamodule(corpus, tmp_path)
    stream = [b for _, b in zip(range(6), dm.train_dataloader())]
    resumed = _datamodule(corpus, tmp_path)
    resumed.load_state_dict({"train_batches_consumed": 4})
    again = [b for _, b in zip(range(2), resumed.train_dataloader())]
    assert torch.equal(again[0][0], stream[4][0]) and torch.equal(again[1][1], stream[5][1])
    assert dm.state_dict() == {"train_batches_consumed": 0}


def test_cache_is_reused_and_rebuilt_when_untrustworthy(corpus, tmp_path):
    dm = _datamodule(corpus, tmp_path)
    (train_bin,) = dm.cache.shard_paths("train")
    original = np.array(dm.train_tokens)
    del dm.train_tokens  # drop the memory map before damaging its file
    stamp = os.stat(train_bin).st_mtime_ns
    assert _datamodule(corpus, tmp_path).cache == dm.cache
    assert os.stat(train_bin).st_mtime_ns == stamp  # reused, not rewritten
    with open(train_bin, "r+b") as f:  # a half-written token file
        f.truncate(os.path.getsize(train_bin) // 2)
    rebuilt = _datamodule(corpus, tmp_path)
    assert np.array_equal(np.asarray(rebuilt.train_tokens), original)
    assert not train_bin.exists() and rebuilt.cache.shard_paths("val") == dm.cache.shard_paths("val")


def test_changed_settings_get_their_own_cache(corpus, tmp_path):
    a = _datamodule(corpus, tmp_path)
    b = _datamodule(corpus, tmp_path, vocab_size=320)
    assert a.cache.folder != b.cache.folder and b.tokenizer.vocab_size == 320


def test_given_tokenizer_fixes_the_vocab_size(corpus, tmp_path):
    a = _datamodule(corpus, tmp_path)
    dm = TextDataModule(train_files=[str(corpus)], tokenizer_path=str(a.cache.tokenizer_path), context_length=16,
                        cache_dir=str(tmp_path / "cache2"))
    assert dm.vocab_size == 300
    dm.prepare_data()
    dm.setup("fit")
    assert np.array_equal(np.asarray(dm.val_tokens), np.asarray(a.val_tokens))


def test_prompts_inline_and_from_files(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("first\n\nsecond line\n")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a\\nb"}\n')
    dm = TextDataModule(prompts=["x"], prompts_file=str(text))
    assert dm.read_prompts() == ["x", "first", "second line"]
    assert TextDataModule(prompts_file=str(jsonl)).read_prompts() == ["a\nb"]
    assert next(iter(TextDataModule(prompts=["a", "b", "c"], predict_batch_size=2).predict_dataloader())) == ["a", "b"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompts=None), "predict needs prompts"),
    (dict(prompts_file="/no/such/prompts.txt"), "does not exist"),
])
def test_bad_prompts(kwargs, match):
    with pytest.raises(UserError, match=match):
        TextDataModule(**kwargs).read_prompts()


def test_bad_settings_are_reported_together():
    with pytest.raises(UserError, match="val_fraction must be between 0 and 1.*batch_size must be a positive integer"):
        TextDataModule(batch_size=0, val_fraction=1.5)


def test_missing_and_empty_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="does not exist"):
        _datamodule(tmp_path / "missing.txt", tmp_path)
    with pytest.raises(UserError, match="is empty"):
        _datamodule(empty, tmp_path)


def test_corpus_shorter_than_a_window(tmp_path):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("To be, or not to be: that is the question." * 3)
    with pytest.raises(UserError, match="fewer than one window"):
        _datamodule(tiny, tmp_path, context_length=64, vocab_size=260)


def test_missing_tokenizer_file(tmp_path):
    with pytest.raises(UserError, match="tokenizer file .* does not exist"):
        TextDataModule(tokenizer_path=str(tmp_path / "tok.json"))


@pytest.mark.parametrize("flag, value, expected", [
    ("--data.train_files", "a.txt", ["a.txt"]),
    ("--data.train_files", "[a.txt, b.txt]", ["a.txt", "b.txt"]),
    ("--data.val_files", "data/*.parquet", ["data/*.parquet"]),
    ("--data.test_files", "hamlet.txt", ["hamlet.txt"]),
])
def test_every_files_setting_takes_one_path_or_a_list(tmp_path, monkeypatch, flag, value, expected):
    from llm_lit.commands.lightning_cli import LLMLitCLI
    from cli_helpers import DEBUG_CONFIG

    monkeypatch.chdir(tmp_path)
    cli = LLMLitCLI(args=["--config", str(DEBUG_CONFIG), flag, value], run=False)
    assert getattr(cli.datamodule, flag.split(".")[1]) == expected


def test_prompts_come_from_the_corpus_unless_configured(corpus, tmp_path):
    own = _datamodule(corpus, tmp_path)  # a corpus of one's own: the start of its validation split
    expected = own.tokenizer.decode([int(i) for i in own.val_tokens[:8]])
    assert own.corpus_prompts() == [expected] and CORPUS[int(len(CORPUS) * 0.9):].startswith(expected)
    assert TextDataModule().corpus_prompts() == ["ROMEO:", "JULIET:"]  # the bundled corpus, before any data step

    from llm_lit.model import ModelConfig
    from llm_lit.training.module import LanguageModel
    from types import SimpleNamespace

    module = LanguageModel(ModelConfig(vocab_size=300, context_length=16, d_model=16, n_layers=1, n_heads=2))
    module.trainer = SimpleNamespace(datamodule=own, gradient_clip_val=None)
    module.setup("validate")
    assert module.sample_prompts == [expected]
    chosen = LanguageModel(ModelConfig(vocab_size=300, context_length=16, d_model=16, n_layers=1, n_heads=2),
                           sample_prompts=["To be"])
    chosen.trainer = module.trainer
    chosen.setup("validate")
    assert chosen.sample_prompts == ["To be"]
