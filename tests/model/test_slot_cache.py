"""`SlotKVCache` + `forward_slots` compute what `TransformerLM.forward` computes for each row alone, whatever
the other rows' lengths, the order of the rows, chunked prompts or a reused slot."""

from __future__ import annotations

import pytest
import torch

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.model.slot_cache import SlotKVCache, forward_slots

TINY = dict(vocab_size=61, context_length=24, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)


def _model(**overrides) -> TransformerLM:  # noqa: ANN003
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(**{**TINY, **overrides})).eval()


def _reference(model: TransformerLM, ids: list[int]) -> torch.Tensor:
    """Logits `(seq, vocab)` of the whole sequence in one uncached forward."""
    with torch.inference_mode():
        return model(torch.tensor([ids]))[0]


@pytest.mark.parametrize("position", ["rope", "alibi", "learned", "sinusoidal", "none"])
@pytest.mark.parametrize("kernels", ["torch", "reference"])
def test_rows_of_different_lengths_equal_each_alone(position: str, kernels: str) -> None:
    model = _model(position=position, kernels=kernels)
    torch.manual_seed(1)
    a, b = torch.randint(0, 61, (20,)).tolist(), torch.randint(0, 61, (20,)).tolist()
    prompt_a, prompt_b = a[:3], b[:11]
    cache = SlotKVCache.for_model(model, num_slots=4)
    with torch.inference_mode():
        first_a = forward_slots(model, torch.tensor([prompt_a]), cache, rows=[2])[0]
        first_b = forward_slots(model, torch.tensor([prompt_b[:6]]), cache, rows=[0])  # a prompt in two chunks
        first_b = forward_slots(model, torch.tensor([prompt_b[6:]]), cache, rows=[0])[0]
        steps = []
        for t in range(8):  # rows in slot order 2, 0: not a contiguous range
            ids = torch.tensor([[a[len(prompt_a) + t]], [b[len(prompt_b) + t]]])
            steps.append(forward_slots(model, ids, cache, rows=[2, 0])[:, 0])
    ref_a, ref_b = _reference(model, a[:len(prompt_a) + 8]), _reference(model, b[:len(prompt_b) + 8])
    torch.testing.assert_close(first_a, ref_a[:len(prompt_a)], atol=1e-5, rtol=0)
    torch.testing.assert_close(first_b, ref_b[6:len(prompt_b)], atol=1e-5, rtol=0)
    for t, logits in enumerate(steps):
        torch.testing.assert_close(logits[0], ref_a[len(prompt_a) + t], atol=1e-5, rtol=0)
        torch.testing.assert_close(logits[1], ref_b[len(prompt_b) + t], atol=1e-5, rtol=0)
    assert cache.lengths == [len(prompt_b) + 8, 0, len(prompt_a) + 8, 0]


def test_contiguous_rows_and_a_reused_slot() -> None:
    model = _model()
    cache = SlotKVCache.for_model(model, num_slots=3)
    with torch.inference_mode():
        last = forward_slots(model, torch.tensor([[5, 6, 7, 8, 9, 10]]), cache, rows=[1], last_only=True)
        assert last.shape == (1, 1, 61)
        torch.testing.assert_close(last[0, 0], _reference(model, [5, 6, 7, 8, 9, 10])[-1], atol=1e-5, rtol=0)
        cache.clear(1)  # the next request in slot 1 must not see the last one's keys
        forward_slots(model, torch.tensor([[1, 2]]), cache, rows=[0])
        forward_slots(model, torch.tensor([[3]]), cache, rows=[1])
        got = forward_slots(model, torch.tensor([[4], [4]]), cache, rows=[0, 1])[:, 0]
    torch.testing.assert_close(got[0], _reference(model, [1, 2, 4])[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1], _reference(model, [3, 4])[-1], atol=1e-5, rtol=0)


def test_clear_with_zero_overwrites_the_slot() -> None:
    model = _model()
    cache = SlotKVCache.for_model(model, num_slots=2)
    with torch.inference_mode():
        forward_slots(model, torch.tensor([[1, 2, 3]]), cache, rows=[1])
    assert cache.keys[0][1].abs().sum() > 0
    cache.clear(1, zero=True)
    assert cache.lengths == [0, 0] and all(k[1].abs().sum() == 0 for k in cache.keys + cache.values)
    assert cache.nbytes() == 2 * 2 * (2 * 2 * 24 * 8) * 4


def test_bad_calls_are_one_sentence() -> None:
    model = _model(position="learned")
    cache = SlotKVCache.for_model(model, num_slots=2)
    with pytest.raises(UserError, match="one row of ids per slot"):
        forward_slots(model, torch.tensor([[1], [2]]), cache, rows=[0])
    with pytest.raises(UserError, match="distinct slots"):
        forward_slots(model, torch.tensor([[1], [2]]), cache, rows=[0, 0])
    with pytest.raises(UserError, match="holds 24 tokens"):
        forward_slots(model, torch.tensor([list(range(25))]), cache, rows=[1])
    with pytest.raises(UserError, match="Learned positions stop"):
        SlotKVCache.for_model(model, num_slots=1, max_seq_len=25)
