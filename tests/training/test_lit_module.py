"""LanguageModel pieces that need no Trainer: exact eval sums (loss, bytes), tokenizer checks,
the checkpoint payload, and load_checkpoint's errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_lit.run.checkpoint import load_checkpoint
from llm_lit.data.datasets import IGNORE_INDEX
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.training.module import LanguageModel
from tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "corpus.txt"
    path.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    vocab, merges = train_bpe(path, 300, special_tokens=["<|endoftext|>"])
    return Tokenizer(vocab, merges, special_tokens=["<|endoftext|>"])


def _module(vocab_size: int = 300) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(ModelConfig(vocab_size=vocab_size, context_length=16, d_model=32, n_layers=1, n_heads=2))


def test_eval_sums_are_exact_token_nll_and_bytes(tokenizer):
    module = _module()
    module.set_tokenizer(tokenizer)
    x = torch.randint(0, 300, (3, 16))
    y = torch.randint(0, 300, (3, 16))
    y[2, 5:] = IGNORE_INDEX  # a padded last window
    module.validation_step((x, y), 0)
    module.validation_step((x[:1], torch.full_like(y[:1], IGNORE_INDEX)), 1)  # an all-padding window adds nothing
    with torch.no_grad():
        logits = module.model(x)
    expected_nll = F.cross_entropy(logits.reshape(-1, 300).double(), y.reshape(-1), ignore_index=IGNORE_INDEX,
                                   reduction="sum")
    keep = y[y != IGNORE_INDEX]
    sums = module.eval_metrics
    assert sums.tokens.compute().item() == keep.numel()
    assert math.isclose(sums.nll.compute().item(), expected_nll.item(), rel_tol=1e-5)
    assert sums.bytes.compute().item() == sum(len(tokenizer.vocab[int(t)]) for t in keep)
    metrics = sums.compute("val")
    assert math.isclose(metrics["val/loss"].item(), expected_nll.item() / keep.numel(), rel_tol=1e-5)
    assert math.isclose(metrics["val/bpb"].item(), expected_nll.item() / math.log(2) / sum(
        len(tokenizer.vocab[int(t)]) for t in keep), rel_tol=1e-5)
    assert sums.compute("val") == {}  # the sums start again from zero


def test_set_tokenizer_rejects_a_vocab_larger_than_the_model(tokenizer):
    with pytest.raises(UserError, match="tokenizer has 300 tokens but the model's vocab_size is 280"):
        _module(vocab_size=280).set_tokenizer(tokenizer)


def test_checkpoint_payload_round_trip_and_tokenizer_mismatch(tokenizer):
    saved = _module()
    saved.set_tokenizer(tokenizer)
    checkpoint: dict = {}
    saved.on_save_checkpoint(checkpoint)
    assert checkpoint["llm_lit"]["model_config"] == saved.config.to_dict()
    restored = _module()
    restored.on_load_checkpoint(checkpoint)
    assert restored.tokenizer.fingerprint() == tokenizer.fingerprint()
    other = Tokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens=["<|endoftext|>"])
    mismatched = _module()
    mismatched.set_tokenizer(other)
    with pytest.raises(UserError, match="tokenizer differs"):
        mismatched.on_load_checkpoint(checkpoint)
    with pytest.raises(UserError, match="not written by llm_lit"):
        _module().on_load_checkpoint({"state_dict": {}})


def test_load_checkpoint_round_trip_and_mismatched_weights(tokenizer, tmp_path):
    module = _module()
    module.set_tokenizer(tokenizer)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    good = tmp_path / "good.ckpt"
    torch.save(checkpoint, good)
    model, tok = load_checkpoint(good)
    ids = torch.randint(0, 300, (1, 8))
    assert torch.equal(model(ids), module.model.eval()(ids))
    assert tok.fingerprint() == tokenizer.fingerprint()

    checkpoint["llm_lit"]["model_config"]["d_model"] = 64
    checkpoint["llm_lit"]["model_config"]["d_ff"] = None
    bad = tmp_path / "bad.ckpt"
    torch.save(checkpoint, bad)
    with pytest.raises(UserError, match="another architecture"):
        load_checkpoint(bad)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(truncated)


def test_compile_is_nn_modules_method_and_model_compile_still_configures_it(monkeypatch):
    """`LanguageModel(...).compile()` is torch's `nn.Module.compile` (a bool attribute used to hide it);
    the `compile` init argument (config key model.compile) still compiles the transformer in configure_model."""
    assert _module().compile() is None  # was: TypeError: 'bool' object is not callable
    compiled = []
    monkeypatch.setattr(TransformerLM, "compile", lambda self, *args, **kwargs: compiled.append(self))
    plain = _module()
    plain.configure_model()
    assert compiled == []
    configured = LanguageModel(ModelConfig(vocab_size=300, context_length=16, d_model=32, n_layers=1, n_heads=2),
                               compile=True)
    configured.configure_model()
    configured.configure_model()  # Lightning may call it again: compiled once
    assert compiled == [configured.model]
