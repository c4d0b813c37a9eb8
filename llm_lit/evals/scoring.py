"""Log-likelihoods of continuations, each shared context encoded once and never padded.

`score_requests` takes token requests `(context ids, continuation ids)` and returns, for each,
the sum of the continuation's log-probabilities and whether greedy decoding would produce it:

1. A request longer than the context window keeps its last `context_length + 1` tokens (the
   continuation whole), as the harness does.
2. Requests with the same context (the choices of a multiple-choice question) share it: each
   distinct context runs through the model once, into a KV cache. Contexts are sorted by length
   and run in batches of equal length, so no batch holds a padding token.
3. The continuations then run on top of a copy of their context's cached keys and values, sorted
   by length, the shorter ones of a batch padded on the right (after their last token, where
   causal attention lets no padding reach a scored position); their first token is scored from
   the context's last logits.

`reference_scores` computes the same numbers the plain way (one full forward per request), for
the tests.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Sequence

import torch

from llm_lit.errors import UserError
from llm_lit.model.attention import KVCache
from llm_lit.model.transformer import TransformerLM

#: A request in ids: (context ids, continuation ids).
TokenRequest = tuple[Sequence[int], Sequence[int]]


class Score(NamedTuple):
    """The log-likelihood of a continuation and whether every one of its tokens is the argmax."""

    logprob: float
    greedy: bool


def fit_to_window(request: TokenRequest, context_length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`request` cut from the left to `context_length + 1` tokens (the model reads all but the last), keeping
    the continuation whole; `UserError` for a continuation longer than the context."""
    context, continuation = tuple(request[0]), tuple(request[1])
    if len(continuation) > context_length:
        raise UserError(f"A continuation of {len(continuation)} tokens is longer than the model's context of "
                        f"{context_length} tokens, so it cannot be scored; shorten the task's continuations.")
    if not context:
        raise UserError("A request has no context tokens; give it a context or a start token.")
    overflow = len(context) + len(continuation) - (context_length + 1)
    return (context[overflow:] if overflow > 0 else context), continuation


def score_requests(model: TransformerLM, requests: Sequence[TokenRequest], batch_size: int = 32) -> list[Score]:
    """The `Score` of each request (see the module docstring); `batch_size` caps the rows of a forward."""
    if batch_size < 1:
        raise UserError(f"batch_size must be a positive number of rows (got {batch_size}); pass e.g. 32.")
    length = model.config.context_length
    scores: list[Score | None] = [None] * len(requests)
    by_context: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    for index, request in enumerate(requests):
        context, continuation = fit_to_window(request, length)
        if not continuation:
            scores[index] = Score(0.0, True)
        else:
            by_context[context].append((index, continuation))
    contexts = sorted(by_context, key=len)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _equal_length_batches(contexts, batch_size):
                _score_batch(model, batch, by_context, scores, batch_size)
    finally:
        model.train(was_training)
    return scores  # type: ignore[return-value]


def _equal_length_batches(sequences: list[tuple[int, ...]], batch_size: int) -> list[list[tuple[int, ...]]]:
    """`sequences` (sorted by length) in runs of equal length, each cut into batches of at most `batch_size`."""
    batches: list[list[tuple[int, ...]]] = []
    for sequence in sequences:
        last = batches[-1] if batches else None
        if last is not None and len(last[0]) == len(sequence) and len(last) < batch_size:
            last.append(sequence)
        else:
            batches.append([sequence])
    return batches


def _score_batch(model: TransformerLM, contexts: list[tuple[int, ...]],
                 by_context: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]],
                 scores: list[Score | None], batch_size: int) -> None:
    """Score every continuation of `contexts` (equal lengths) into `scores`."""
    device = model.token_embeddings.weight.device
    rows = [(row, index, continuation) for row, context in enumerate(contexts)
            for index, continuation in by_context[context]]
    context_len = len(contexts[0])
    longest = max(len(continuation) for _, _, continuation in rows)
    cache = model.new_kv_cache(len(contexts), max_seq_len=context_len + longest - 1)
    ids = torch.tensor(contexts, dtype=torch.long, device=device)
    last = torch.log_softmax(model(ids, kv_cache=cache)[:, -1].float(), dim=-1)  # (contexts, vocab)
    first_best = last.argmax(dim=-1).tolist()
    first = {index: (float(last[row, continuation[0]]), first_best[row] == continuation[0])
             for row, index, continuation in rows}
    rest = sorted((row for row in rows if len(row[2]) > 1), key=lambda row: len(row[2]))
    for row in rows:
        if len(row[2]) == 1:
            scores[row[1]] = Score(*first[row[1]])
    for start in range(0, len(rest), batch_size):
        chunk = rest[start:start + batch_size]
        for (_, index, _), (logprob, greedy) in zip(chunk, _score_rest(model, cache, chunk, context_len)):
            head_logprob, head_greedy = first[index]
            scores[index] = Score(head_logprob + logprob, head_greedy and greedy)


def _score_rest(model: TransformerLM, cache: KVCache, chunk: list[tuple[int, int, tuple[int, ...]]],
                context_len: int) -> list[tuple[float, bool]]:
    """Log-likelihood and greediness of tokens 1.. of continuations (sorted by length) on their contexts' cache.

    Shorter rows are padded on the right: a padding slot comes after every real token of its row, and
    attention is causal, so it changes no score (its logits are computed and dropped)."""
    device = model.token_embeddings.weight.device
    width = max(len(continuation) for _, _, continuation in chunk) - 1
    inputs = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
    targets = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
    keep = torch.zeros(len(chunk), width, dtype=torch.bool, device=device)
    for i, (_, _, continuation) in enumerate(chunk):
        n = len(continuation) - 1
        inputs[i, :n] = torch.tensor(continuation[:-1], device=device)
        targets[i, :n] = torch.tensor(continuation[1:], device=device)
        keep[i, :n] = True
    sources = torch.tensor([row for row, _, _ in chunk], device=device)
    rows_cache = _rows_of(model, cache, sources, context_len, width)
    logprobs = torch.log_softmax(model(inputs, kv_cache=rows_cache).float(), dim=-1)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).masked_fill(~keep, 0.0).sum(dim=-1)  # (rows,)
    greedy = ((logprobs.argmax(dim=-1) == targets) | ~keep).all(dim=-1)
    return list(zip(picked.tolist(), greedy.tolist()))


def _rows_of(model: TransformerLM, cache: KVCache, rows: torch.Tensor, filled: int, room: int) -> KVCache:
    """A new cache holding the first `filled` slots of `cache`'s `rows` (one row each, repeats allowed), with
    `room` free slots after them."""
    copy = model.new_kv_cache(len(rows), max_seq_len=filled + room)
    for layer in range(len(cache.keys)):
        copy.keys[layer][:, :, :filled] = cache.keys[layer][rows, :, :filled]
        copy.values[layer][:, :, :filled] = cache.values[layer][rows, :, :filled]
    copy.positions[:, :filled] = cache.positions[rows, :filled]
    copy.length = filled
    return copy


def reference_scores(model: TransformerLM, requests: Sequence[TokenRequest]) -> list[Score]:
    """`score_requests` the plain way: each request alone, one forward over context + continuation (no cache)."""
    length = model.config.context_length
    device = model.token_embeddings.weight.device
    scores = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for request in requests:
                context, continuation = fit_to_window(request, length)
                if not continuation:
                    scores.append(Score(0.0, True))
                    continue
                ids = torch.tensor([list(context + continuation)[:-1]], dtype=torch.long, device=device)
                logprobs = torch.log_softmax(model(ids).float(), dim=-1)[0, -len(continuation):]
                targets = torch.tensor(continuation, device=device)
                scores.append(Score(float(logprobs.gather(-1, targets.unsqueeze(-1)).sum()),
                                    bool((logprobs.argmax(dim=-1) == targets).all())))
    finally:
        model.train(was_training)
    return scores
