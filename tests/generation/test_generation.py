"""Generation: cache == recompute, sampling semantics, stop tokens, batches, long prompts."""

from __future__ import annotations

import pytest
import torch

from llm_lit.errors import UserError
from llm_lit.generation.sampling import SamplingConfig, SamplingConfigError, filter_logits, generate, sample_next
from llm_lit.model import ModelConfig, TransformerLM

TINY = dict(vocab_size=53, context_length=24, d_model=32, n_layers=2, n_heads=4)


def _model(**overrides) -> TransformerLM:  # noqa: ANN003
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**{**TINY, **overrides}))
    with torch.no_grad():  # sharpen the random logits so greedy choices are far from ties
        model.lm_head.weight.mul_(20)
    return model


def _uncached_greedy(model: TransformerLM, prompt: list[int], n: int) -> list[int]:
    """The plain definition: argmax over the logits of the last `context_length` tokens, step by step."""
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            window = torch.tensor([tokens[-model.config.context_length:]])
            tokens.append(int(model(window)[0, -1].argmax()))
    return tokens[len(prompt):]


@pytest.mark.parametrize("position", ["rope", "alibi", "learned", "sinusoidal", "none"])
@pytest.mark.parametrize("kernels", ["torch", "reference"])
def test_cached_greedy_equals_uncached_even_past_the_context(position: str, kernels: str) -> None:
    model = _model(position=position, kernels=kernels, n_kv_heads=2)
    prompts = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]
    n = 30  # 5 + 30 > context 24: the window slides
    cached = generate(model, prompts, SamplingConfig(max_new_tokens=n, temperature=0))
    uncached = generate(model, prompts, SamplingConfig(max_new_tokens=n, temperature=0, use_cache=False))
    assert cached == uncached
    assert cached[0] == _uncached_greedy(model, prompts[0], n)
    assert all(len(row) == n for row in cached)


def test_ragged_batch_rows_equal_each_prompt_alone() -> None:
    model = _model()
    prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10], [11, 12, 13]]
    sampling = SamplingConfig(max_new_tokens=12, temperature=0)
    together = generate(model, prompts, sampling)
    assert together == [generate(model, [p], sampling)[0] for p in prompts]


def test_seeded_sampling_is_reproducible() -> None:
    model = _model()
    sampling = SamplingConfig(max_new_tokens=20, temperature=1.5, top_k=20, top_p=0.95, seed=123)
    first = generate(model, [[1, 2], [3, 4]], sampling)
    assert generate(model, [[1, 2], [3, 4]], sampling) == first
    other = generate(model, [[1, 2], [3, 4]], SamplingConfig(max_new_tokens=20, temperature=1.5, seed=124))
    assert other != first


def test_temperature_zero_is_argmax_and_training_mode_is_restored() -> None:
    model = _model(dropout=0.5)
    model.train()
    out = generate(model, [[3, 1, 4]], SamplingConfig(max_new_tokens=6, temperature=0))
    assert model.training
    model.eval()
    assert out[0] == _uncached_greedy(model, [3, 1, 4], 6)


def test_top_k_samples_only_among_the_k_most_likely() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    filtered = filter_logits(logits, top_k=2)
    assert torch.isinf(filtered).tolist() == [[True, False, True, False, True]]
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, SamplingConfig(temperature=5.0, top_k=2), g)) for _ in range(200)}
    assert draws == {1, 3}


def test_top_p_keeps_the_smallest_nucleus_reaching_p() -> None:
    probs = torch.tensor([[0.05, 0.5, 0.3, 0.15]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[False, True, True, False]]  # 0.5+0.3 = 0.8
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[False, True, True, True]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, False, False]]  # top token always kept
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, SamplingConfig(top_p=0.8), g)) for _ in range(300)}
    assert draws == {1, 2}


def test_stop_tokens_end_rows_and_are_excluded() -> None:
    model = _model()
    free = generate(model, [[1, 2, 3], [7, 7]], SamplingConfig(max_new_tokens=15, temperature=0))
    stop = free[0][4]
    stopped = generate(model, [[1, 2, 3], [7, 7]], SamplingConfig(max_new_tokens=15, temperature=0), stop_tokens=[stop])
    assert stopped[0] == free[0][: free[0].index(stop)]
    expected_second = free[1][: free[1].index(stop)] if stop in free[1] else free[1]
    assert stopped[1] == expected_second
    assert generate(model, [[1]], SamplingConfig(max_new_tokens=0)) == [[]]


def test_long_prompt_warns_and_keeps_its_last_tokens() -> None:
    model = _model()
    prompt = list(range(40))  # context is 24
    with pytest.warns(UserWarning, match="Prompt 0 has 40 tokens, more than context_length 24; keeping its last 24"):
        out = generate(model, [prompt], SamplingConfig(max_new_tokens=5, temperature=0))
    assert out[0] == generate(model, [prompt[-24:]], SamplingConfig(max_new_tokens=5, temperature=0))[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=-1), "max_new_tokens must be a non-negative integer"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(top_k=0), "top_k must be a positive integer or None"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\] or None"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\] or None"),
])
def test_sampling_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(SamplingConfigError, match=message) as info:
        SamplingConfig(**kwargs)
    assert isinstance(info.value, UserError)


def test_generate_rejects_bad_prompts() -> None:
    model = _model()
    with pytest.raises(SamplingConfigError, match="non-empty list of token-id lists"):
        generate(model, [1, 2, 3], SamplingConfig())  # type: ignore[list-item]
    with pytest.raises(SamplingConfigError, match="Prompt 1 is empty"):
        generate(model, [[1], []], SamplingConfig())
    with pytest.raises(SamplingConfigError, match=r"Prompt 0 has a token id outside \[0, 53\)"):
        generate(model, [[1, 53]], SamplingConfig())
