"""Issue 14's data side: strided evaluation windows (against a direct computation), documents wrapped in
BOS/EOS, the PAD of evaluation windows, and a separate test split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_lit.data import IGNORE_INDEX, SequentialWindows, TextDataModule
from llm_lit.data.tokens import document_replacements, prepare_token_cache, separator_policy
from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer
from tokenizer.token_file import replace_ids


def strided_nll(model: TransformerLM, tokens: np.ndarray, stride: int, world: int = 1, batch: int = 3) -> tuple[float, int]:
    """Summed NLL and count of the targets the windows score (all ranks)."""
    nll, count = 0.0, 0
    for rank in range(world):
        for x, y in SequentialWindows(tokens, model.config.context_length, batch, rank=rank, world_size=world,
                                      stride=stride):
            logits = model(x).double()
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX,
                                                     reduction="sum")
            nll += float(loss)
            count += int((y != IGNORE_INDEX).sum())
    return nll, count


def direct_nll(model: TransformerLM, tokens: np.ndarray, stride: int) -> tuple[float, int]:
    """Each target i scored from the start of the first window (starts 0, stride, 2*stride, ...) whose
    targets reach i: 0 while i <= T, else ceil((i - T) / stride) * stride (the Hugging Face guide's loop)."""
    T = model.config.context_length
    nll = 0.0
    for i in range(1, len(tokens)):
        start = 0 if i <= T else math.ceil((i - T) / stride) * stride
        context = torch.as_tensor(tokens[start:i], dtype=torch.long)[None]
        assert 1 <= context.shape[1] <= T and (i <= T or context.shape[1] >= T - stride + 1)
        logp = torch.log_softmax(model(context)[0, -1].double(), -1)
        nll -= float(logp[int(tokens[i])])
    return nll, len(tokens) - 1


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=50, context_length=8, d_model=16, n_layers=1, n_heads=2)).eval()


@pytest.mark.parametrize("n, stride, world", [(40, 3, 1), (41, 8, 1), (37, 1, 2), (9, 4, 1), (5, 2, 1), (60, 5, 3)])
def test_strided_nll_equals_the_direct_computation(model, n, stride, world):
    tokens = np.random.default_rng(n).integers(0, 50, n).astype(np.uint16)
    with torch.no_grad():
        got, got_count = strided_nll(model, tokens, stride, world)
        want, want_count = direct_nll(model, tokens, stride)
    assert got_count == want_count
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("n, ctx, stride, world", [(101, 10, 3, 1), (100, 10, 1, 2), (1000, 7, 5, 3), (12, 64, 9, 2)])
def test_strided_windows_score_every_target_once(n, ctx, stride, world):
    tokens = np.arange(n, dtype=np.uint32)
    seen, lengths = [], set()
    for rank in range(world):
        ds = SequentialWindows(tokens, ctx, 4, rank=rank, world_size=world, stride=stride)
        batches = list(ds)
        lengths.add(len(batches))
        for x, y in batches:
            keep = y != IGNORE_INDEX
            assert torch.equal(y[keep], x[keep] + 1)
            seen.extend(y[keep].tolist())
    assert sorted(seen) == list(range(1, n)) and len(lengths) == 1


def test_stride_equal_to_the_context_is_the_non_overlapping_windows():
    tokens = np.random.default_rng(1).integers(0, 99, 333).astype(np.uint16)
    for (xa, ya), (xb, yb) in zip(SequentialWindows(tokens, 16, 4, stride=16), SequentialWindows(tokens, 16, 4)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(SequentialWindows(tokens, 16, 4, stride=16)) == len(SequentialWindows(tokens, 16, 4))


def test_a_stride_outside_the_context_is_refused():
    with pytest.raises(ValueError, match=r"stride must be in \[1, 8\]"):
        SequentialWindows(np.zeros(20, dtype=np.uint16), 8, 2, stride=9)


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_stride": 0}, "eval_stride must be a positive integer (got 0)"),
    ({"eval_stride": 40, "context_length": 32}, "eval_stride must be at most context_length 32 (got 40)"),
])
def test_bad_eval_stride_is_one_sentence(kwargs, message):
    with pytest.raises(UserError) as e:
        TextDataModule(**kwargs)
    assert message in str(e.value) and len(str(e.value).splitlines()) == 1


# ---------------------------------------------------------------------- roles
def byte_tokenizer(special_tokens, roles=None) -> Tokenizer:
    return Tokenizer({b: bytes([b]) for b in range(256)}, [], special_tokens, roles)


def test_replace_ids_matches_a_loop():
    rng = np.random.default_rng(0)
    for new in [(), (7,), (8, 9), (1, 2, 3)]:
        ids = rng.integers(0, 5, 200).astype(np.uint16)
        want = [t for i in ids for t in (new if i == 3 else (i,))]
        assert replace_ids(ids, {3: new}).tolist() == want


def test_roles_decide_how_documents_are_wrapped():
    specials = ["<|endoftext|>", "<s>", "</s>"]
    eot, bos, eos = 256, 257, 258
    none = byte_tokenizer(specials)
    assert separator_policy(none).between == (eot,) and document_replacements(none) is None
    both = byte_tokenizer(specials, {"bos": "<s>", "eos": "</s>"})
    policy = separator_policy(both)
    assert (policy.before_each, policy.after_each, policy.between) == ((bos,), (eos,), ())
    assert document_replacements(both) == {eot: (eos, bos)}
    gpt2 = byte_tokenizer(specials, {"bos": "<|endoftext|>", "eos": "<|endoftext|>"})
    assert (separator_policy(gpt2).before_each, separator_policy(gpt2).after_each) == ((), (eot,))
    assert document_replacements(gpt2) is None


def test_a_corpus_is_wrapped_in_bos_and_eos(tmp_path):
    (tmp_path / "a.txt").write_text("one<|endoftext|>two")
    (tmp_path / "b.txt").write_text("three")
    (tmp_path / "t.txt").write_text("four")
    tok = byte_tokenizer(["<|endoftext|>", "<s>", "</s>"])
    cache = prepare_token_cache([tmp_path / "a.txt"], [tmp_path / "b.txt"], 0.1, 300, tok.special_tokens,
                                tmp_path / "cache", tokenizer=tok, num_proc=1, roles={"bos": "<s>", "eos": "</s>"},
                                test_files=[tmp_path / "t.txt"])
    def text(split):
        return [tok.decode([i]) for i in np.asarray(cache.split(split)[:]).tolist()]
    assert "".join(text("train")) == "<s>one</s><s>two</s>"
    assert "".join(text("val")) == "<s>three</s>"
    assert "".join(text("test")) == "<s>four</s>"
    with pytest.raises(UserError, match=r"data.eos_token '</x>' is not a special token of the given tokenizer"):
        prepare_token_cache([tmp_path / "a.txt"], [tmp_path / "b.txt"], 0.1, 300, tok.special_tokens,
                            tmp_path / "cache", tokenizer=tok, num_proc=1, roles={"eos": "</x>"})


def test_trained_tokenizer_gets_the_role_tokens_and_the_cache_key_changes(tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 50)
    plain = prepare_token_cache([tmp_path / "a.txt"], None, 0.2, 260, ["<|endoftext|>"], tmp_path / "c", num_proc=1)
    roles = prepare_token_cache([tmp_path / "a.txt"], None, 0.2, 260, ["<|endoftext|>"], tmp_path / "c", num_proc=1,
                                roles={"bos": "<s>"})
    assert plain.folder != roles.folder
    tok = Tokenizer.load(roles.tokenizer_path)
    assert tok.roles == {"bos": "<s>"} and "<s>" in tok.special_tokens
    assert int(roles.split("train")[0]) == tok.role_id("bos")
