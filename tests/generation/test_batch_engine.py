"""`BatchEngine`: what a request computes never depends on the batch it runs in (tokens equal `generate`'s,
per-step log-probabilities equal the request's alone to 1e-5 in float32), requests join and leave between
steps, cancelling frees the slot at the next step, and stopping drains within its bound."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from llm_lit.errors import UserError
from llm_lit.generation.batch_engine import BatchEngine, EngineClosed, EngineFull, Event, Request
from llm_lit.generation.sampling import SamplingConfig, generate
from llm_lit.model import ModelConfig, TransformerLM

TINY = dict(vocab_size=53, context_length=24, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)


def _model(**overrides) -> TransformerLM:  # noqa: ANN003
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # sharpen the random logits so greedy choices are far from ties
        model.lm_head.weight.mul_(20)
    return model


class Collector:
    """The events of one request, and whether it ended."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.finish_reason is not None:
            self.done.set()

    @property
    def tokens(self) -> list[int]:
        return [e.token for e in self.events if e.token is not None]

    @property
    def finish_reason(self) -> str | None:
        return self.events[-1].finish_reason if self.events else None


def _request(prompt: list[int], **sampling) -> tuple[Request, Collector]:  # noqa: ANN003
    out = Collector()
    settings = {"temperature": 0.0, "max_new_tokens": 10, **sampling}
    logprobs = settings.pop("logprobs", None)
    stop_ids = settings.pop("stop_ids", ())
    return Request(prompt, SamplingConfig(**settings), stop_ids=stop_ids, logprobs=logprobs, on_event=out), out


def _run(engine: BatchEngine, outs: list[Collector], max_steps: int = 500) -> None:
    for _ in range(max_steps):
        if all(o.done.is_set() for o in outs):
            return
        engine.step()
    raise AssertionError("the requests did not end")


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_greedy_tokens_equal_generate_for_ragged_concurrent_requests(position: str) -> None:
    model = _model(position=position)
    engine = BatchEngine(model, max_batch_size=3, prefill_chunk=7)  # prompts of 9 and 20 tokens take 2-3 steps
    prompts = [[1, 2, 3], list(range(5, 14)), [40], list(range(20, 40)), [7, 7]]
    lengths = [30, 5, 12, 8, 1]  # 3 + 30 > context 24: the window slides
    pairs = [_request(p, max_new_tokens=n) for p, n in zip(prompts, lengths)]
    for request, _ in pairs:
        engine.submit(request)
    _run(engine, [out for _, out in pairs])
    for (request, out), prompt, n in zip(pairs, prompts, lengths):
        assert out.tokens == generate(model, [prompt], SamplingConfig(max_new_tokens=n, temperature=0))[0]
        assert out.finish_reason == "length"
    assert engine.running() == engine.waiting() == 0


def test_per_step_logprobs_of_concurrent_requests_equal_each_alone() -> None:
    model = _model()
    vocab = TINY["vocab_size"]

    def alone(prompt: list[int], n: int) -> list[list[tuple[int, float]]]:
        engine = BatchEngine(model, max_batch_size=2)
        request, out = _request(prompt, max_new_tokens=n, logprobs=vocab)
        engine.submit(request)
        _run(engine, [out])
        return [e.top_logprobs for e in out.events]

    short, long = [3, 4], list(range(1, 12))
    engine = BatchEngine(model, max_batch_size=2)
    (ra, a), (rb, b) = _request(short, max_new_tokens=9, logprobs=vocab), _request(long, max_new_tokens=6, logprobs=vocab)
    engine.submit(ra)
    engine.step()  # the short request runs alone for a step, then the long one joins
    engine.submit(rb)
    _run(engine, [a, b])
    for out, expected in ((a, alone(short, 9)), (b, alone(long, 6))):
        got = [e.top_logprobs for e in out.events]
        assert len(got) == len(expected)
        for step, (g, e) in enumerate(zip(got, expected)):
            g, e = dict(g), dict(e)
            assert g.keys() == e.keys() == set(range(vocab))
            assert max(abs(g[i] - e[i]) for i in g) <= 1e-5, step
    with torch.inference_mode():  # and alone is the model's own distribution
        reference = torch.log_softmax(model(torch.tensor([short]))[0, -1].double(), -1)
    assert max(abs(dict(a.events[0].top_logprobs)[i] - float(reference[i])) for i in range(vocab)) <= 1e-5
    assert a.events[0].logprob == pytest.approx(dict(a.events[0].top_logprobs)[a.events[0].token])


def test_seeded_sampling_equals_generate_with_that_seed() -> None:
    model = _model()
    settings = dict(temperature=1.3, top_k=20, top_p=0.9, max_new_tokens=15, seed=7)
    engine = BatchEngine(model, max_batch_size=4)
    pairs = [_request([1, 2], **settings), _request([9, 9, 9, 9], **{**settings, "seed": 8})]
    for request, _ in pairs:
        engine.submit(request)
    _run(engine, [o for _, o in pairs])
    assert pairs[0][1].tokens == generate(model, [[1, 2]], SamplingConfig(**settings))[0]
    assert pairs[1][1].tokens == generate(model, [[9, 9, 9, 9]], SamplingConfig(**{**settings, "seed": 8}))[0]


def test_requests_join_and_leave_between_steps() -> None:
    model = _model()
    engine = BatchEngine(model, max_batch_size=2)
    (r1, o1), (r2, o2), (r3, o3) = _request([1], max_new_tokens=12), _request([2], max_new_tokens=3), \
        _request([3], max_new_tokens=3)
    for r in (r1, r2, r3):
        engine.submit(r)
    engine.step()  # each admitted request: its prompt's token, then one decode step's
    assert (engine.running(), engine.waiting()) == (2, 1) and len(o2.tokens) == 2  # the third waits for a slot
    engine.step()
    assert o2.finish_reason == "length" and engine.running() == 1  # the short one left after 3 tokens...
    engine.step()
    assert engine.running() == 2 and engine.waiting() == 0  # ...and the waiting one took its slot
    _run(engine, [o1, o3])
    assert len(o1.tokens) == 12 and len(o3.tokens) == 3


def test_stop_ids_end_a_request_without_being_passed_on() -> None:
    model = _model()
    expected = generate(model, [[1, 2, 3]], SamplingConfig(max_new_tokens=10, temperature=0))[0]
    engine = BatchEngine(model)
    request, out = _request([1, 2, 3], stop_ids=[expected[3]])
    engine.submit(request)
    _run(engine, [out])
    assert out.tokens == expected[:expected.index(expected[3])] and out.finish_reason == "stop"


def test_cancel_frees_the_slot_at_the_next_step_and_drops_a_waiting_request() -> None:
    engine = BatchEngine(_model(), max_batch_size=1)
    (r1, o1), (r2, o2) = _request([1], max_new_tokens=100), _request([2], max_new_tokens=100)
    h1, h2 = engine.submit(r1), engine.submit(r2)
    engine.step()
    engine.cancel(h2)
    engine.cancel(h1)
    assert engine.running() == 1  # until the next step
    engine.step()
    assert engine.running() == engine.waiting() == 0
    assert o1.finish_reason == o2.finish_reason == "cancelled" and o2.tokens == []


def test_zero_new_tokens_and_bad_requests() -> None:
    engine = BatchEngine(_model(), max_batch_size=1, max_queue=1)
    request, out = _request([1], max_new_tokens=0)
    engine.submit(request)
    engine.step()
    assert out.events == [Event(finish_reason="length")]
    with pytest.raises(UserError, match="at least one prompt token"):
        engine.submit(_request([])[0])
    with pytest.raises(UserError, match=r"outside \[0, 53\)"):
        engine.submit(_request([53])[0])
    engine.submit(_request([1])[0])
    with pytest.raises(EngineFull, match="retry in a moment"):
        engine.submit(_request([1])[0])
    with pytest.raises(UserError, match="max_batch_size must be a positive integer"):
        BatchEngine(_model(), max_batch_size=0)


def test_non_finite_scores_end_only_that_request_and_zero_its_slot() -> None:
    model = _model()
    expected = generate(model, [[1, 2]], SamplingConfig(max_new_tokens=4, temperature=0))[0]
    poison = next(i for i in range(52, 0, -1) if i not in expected + [1, 2])
    engine = BatchEngine(model, max_batch_size=2)
    good, good_out = _request([1, 2], max_new_tokens=4)
    engine.submit(good)
    engine.step()
    with torch.no_grad():  # a poisoned id: its embedding is NaN
        model.token_embeddings.weight[poison] = float("nan")
    bad, bad_out = _request([poison], max_new_tokens=4)
    engine.submit(bad)
    _run(engine, [good_out, bad_out])
    assert bad_out.finish_reason == "error" and "NaN or infinite" in bad_out.events[-1].error
    assert good_out.finish_reason == "length" and good_out.tokens == expected
    assert all(torch.isfinite(k).all() for k in engine.cache.keys + engine.cache.values)


def test_thread_serves_and_stop_drains_then_cancels_past_the_bound() -> None:
    engine = BatchEngine(_model(), max_batch_size=2).start()
    short, short_out = _request([1], max_new_tokens=5)
    engine.submit(short)
    assert short_out.done.wait(10) and len(short_out.tokens) == 5
    endless, endless_out = _request([2], max_new_tokens=10**9)
    engine.submit(endless)
    started = time.monotonic()
    engine.stop(drain_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    assert endless_out.finish_reason == "cancelled" and endless_out.tokens
    with pytest.raises(EngineClosed, match="shutting down"):
        engine.submit(_request([1])[0])
