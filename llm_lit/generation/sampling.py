"""Text generation: greedy, temperature, top-k and top-p (nucleus) sampling with a KV cache.

How prompts are batched: prompts of equal length run together as one batch; prompts of
different lengths run as separate equal-length groups, so no padding ever enters the math and
every row gives exactly what its prompt gives when generated alone (greedy), whatever else is
in the batch.

How the context window slides: a prompt longer than `context_length` is cut to its last
`context_length` tokens (with a warning). While the sequence fits, each step feeds only the new
token through the KV cache. Once prompt + generated tokens exceed the context, every further
step recomputes the last `context_length` tokens from scratch (the cache is reset and refilled),
which is exactly what the uncached path computes, so cached and uncached greedy generation
produce the same tokens everywhere.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.model.functional import softmax
from llm_lit.model.transformer import TransformerLM


#: The largest seed a torch generator takes.
MAX_SEED = 2**64 - 1


class SamplingConfigError(UserError, ValueError):
    """An invalid `SamplingConfig` or `generate` argument."""


class UnusableWeightsError(UserError):
    """The model's outputs are not finite: nothing can be sampled from it."""


@dataclass
class SamplingConfig:
    """How to pick each new token.

    Args:
        max_new_tokens: Number of tokens to generate per prompt (fewer if a stop token comes first).
        temperature: Divides the logits before sampling; 0 means greedy (argmax).
        top_k: Sample only among the k most likely tokens (None: no limit).
        top_p: Sample only among the smallest set of most likely tokens whose probability reaches top_p (None: no limit).
        seed: Seed of the sampling generator, for reproducible samples, from 0 to 2**64 - 1 (None: use torch's global RNG).
        use_cache: Reuse keys and values of earlier tokens (KV cache) instead of recomputing the whole sequence each step.
        stop_tokens: Special tokens that end a continuation, e.g. ["</s>"] (default: the tokenizer's EOS role, else <|endoftext|>); [] never stops early.
    """

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    use_cache: bool = True
    stop_tokens: Optional[list[str]] = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            problems.append(f"max_new_tokens must be a non-negative integer (got {self.max_new_tokens!r})")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            problems.append(f"temperature must be >= 0 (got {self.temperature!r})")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            problems.append(f"top_k must be a positive integer or None (got {self.top_k!r})")
        if self.top_p is not None and (not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1):
            problems.append(f"top_p must be in (0, 1] or None (got {self.top_p!r})")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed <= MAX_SEED):
            problems.append(f"seed must be a whole number from 0 to 2**64 - 1 or None (got {self.seed!r})")
        if self.stop_tokens is not None and not all(isinstance(t, str) and t for t in self.stop_tokens):
            problems.append(f"stop_tokens must be a list of special-token strings (got {self.stop_tokens!r})")
        if problems:
            raise SamplingConfigError("Invalid SamplingConfig: " + "; ".join(problems) + "; fix these fields.")


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus.

    The nucleus is the smallest set of most likely tokens whose probability sum reaches
    `top_p` (the most likely token is always kept). Shapes: `(batch, vocab) -> (batch, vocab)`.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: Tensor, sampling: SamplingConfig, generator: torch.Generator | None = None) -> Tensor:
    """Pick the next token of each row from `logits (batch, vocab)`; returns ids `(batch,)`."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / sampling.temperature, sampling.top_k, sampling.top_p)
    probs = softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def generate(model: TransformerLM, prompts: list[list[int]], sampling: SamplingConfig | None = None,
             stop_tokens: Sequence[int] = ()) -> list[list[int]]:
    """Continue each prompt; returns only the new tokens of each (a stop token ends a row and is left out).

    Args:
        model: the language model (put in eval mode for the call, then restored).
        prompts: token-id lists, one per row, of any lengths.
        sampling: how to choose tokens (default `SamplingConfig()`).
        stop_tokens: ids (e.g. that of `<|endoftext|>`) that end a row.
    """
    sampling = sampling or SamplingConfig()
    stop = set(int(t) for t in stop_tokens)
    prompts = _check_prompts(model, prompts)
    device = model.token_embeddings.weight.device
    generator = None
    if sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)

    groups: dict[int, list[int]] = defaultdict(list)
    for row, prompt in enumerate(prompts):
        groups[len(prompt)].append(row)
    results: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for rows in groups.values():
                batch = torch.tensor([prompts[r] for r in rows], dtype=torch.long, device=device)
                for r, new_tokens in zip(rows, _generate_batch(model, batch, sampling, stop, generator)):
                    results[r] = new_tokens
    finally:
        model.train(was_training)
    return results


def stream(model: TransformerLM, prompt: list[int], sampling: SamplingConfig | None = None,
           stop_tokens: Sequence[int] = (), generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield the new tokens of one prompt as they are generated (what `generate` returns for it).

    Stops before a stop token, after `sampling.max_new_tokens`, or when the caller stops
    iterating. `generator` (if given) is used and advanced instead of one seeded from
    `sampling.seed`, so a session can continue one random stream across prompts.
    """
    sampling = sampling or SamplingConfig()
    prompt = _check_prompts(model, [prompt])[0]
    device = model.token_embeddings.weight.device
    if generator is None and sampling.seed is not None:
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
    stop = set(int(t) for t in stop_tokens)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens = torch.tensor([prompt], dtype=torch.long, device=device)
            for next_ids in _steps(model, tokens, sampling, generator):
                token = int(next_ids[0])
                if token in stop:
                    return
                yield token
    finally:
        model.train(was_training)


def _generate_batch(model: TransformerLM, tokens: Tensor, sampling: SamplingConfig, stop: set[int],
                    generator: torch.Generator | None) -> list[list[int]]:
    """Generate for equal-length prompts `tokens (batch, prompt_len)`; see the module docstring."""
    new_tokens: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    done = [False] * tokens.shape[0]
    for next_ids in _steps(model, tokens, sampling, generator):
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue
            if token in stop:
                done[row] = True
            else:
                new_tokens[row].append(token)
        if all(done):
            break
    return new_tokens


def _steps(model: TransformerLM, tokens: Tensor, sampling: SamplingConfig,
           generator: torch.Generator | None) -> Iterator[Tensor]:
    """Yield the next ids `(batch,)` of `sampling.max_new_tokens` steps after `tokens (batch, prompt_len)`."""
    context = model.config.context_length
    if sampling.max_new_tokens == 0:
        return
    cache = model.new_kv_cache(tokens.shape[0]) if sampling.use_cache else None
    logits = model(tokens, kv_cache=cache)[:, -1]
    for step in range(sampling.max_new_tokens):
        if not bool(torch.isfinite(logits).all()):  # else greedy picks garbage and sampling fails with a traceback
            raise UnusableWeightsError("The model's next-token scores are NaN or infinite, so its weights are "
                                       "unusable and nothing was generated; use an earlier checkpoint.")
        next_ids = sample_next(logits, sampling, generator)
        yield next_ids
        if step == sampling.max_new_tokens - 1:
            break
        tokens = torch.cat([tokens, next_ids.unsqueeze(-1)], dim=1)
        if cache is not None and cache.length < cache.max_seq_len:
            logits = model(tokens[:, -1:], kv_cache=cache)[:, -1]
        else:  # no cache, or the window is full: recompute the last `context` tokens
            if cache is not None:
                cache.reset()
            logits = model(tokens[:, -context:], kv_cache=cache)[:, -1]


def _check_prompts(model: TransformerLM, prompts: list[list[int]]) -> list[list[int]]:
    """Validate prompts; cut ones longer than the context to their last `context_length` tokens (with a warning)."""
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, (list, tuple)) for p in prompts):
        raise SamplingConfigError("prompts must be a non-empty list of token-id lists; wrap a single prompt as [ids].")
    vocab, context = model.config.vocab_size, model.config.context_length
    checked = []
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise SamplingConfigError(f"Prompt {i} is empty; give every prompt at least one token (e.g. <|endoftext|>).")
        if not all(isinstance(t, int) and 0 <= t < vocab for t in prompt):
            raise SamplingConfigError(f"Prompt {i} has a token id outside [0, {vocab}); encode it with the model's tokenizer.")
        if len(prompt) > context:
            warnings.warn(
                f"Prompt {i} has {len(prompt)} tokens, more than context_length {context}; keeping its last {context} tokens.",
                stacklevel=3,
            )
            prompt = prompt[-context:]
        checked.append(list(prompt))
    return checked
