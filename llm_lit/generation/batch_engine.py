"""Continuous batching: many generation requests share each forward pass, joining and leaving between steps.

    engine = BatchEngine(model, max_batch_size=8)
    engine.start()                                   # a background thread runs the steps
    handle = engine.submit(Request(prompt_ids, SamplingConfig(max_new_tokens=50, temperature=0),
                                   stop_ids=[eos], on_event=print))
    ...
    engine.cancel(handle)                            # e.g. the client went away: its slot is freed next step
    engine.stop(drain_timeout=10)                    # finish (or, past the bound, cancel) what runs, then stop

Each admitted request owns one slot of a `SlotKVCache` (its keys, values and position) and its
own sampling settings and random generator. One engine step

1. drops the requests cancelled since the last step and frees their slots;
2. gives free slots to waiting requests (first come, first served);
3. feeds up to `prefill_chunk` prompt tokens of the newly admitted requests through the model
   (a prompt longer than that is fed over several steps, so a long prompt never stalls the
   running batch for long); a request whose prompt is in samples its first token;
4. runs one decode step for every other running request at once (one forward pass over their
   slots, each row at its own position) and samples each row's next token.

A request therefore computes exactly what it computes alone (`forward_slots` masks every other
row out; sampling uses the request's own generator), whatever else is in the batch. Its window
slides as in `generate`: once its slot holds `context_length` tokens, each further step recomputes
its last `context_length` tokens from scratch. Events (`Event`: a token, or the end) are passed to
the request's `on_event` from the engine thread, in order; the last one has `finish_reason` set.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

import torch
from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.generation.sampling import SamplingConfig, sample_next
from llm_lit.model.functional import log_softmax
from llm_lit.model.slot_cache import SlotKVCache, forward_slots
from llm_lit.model.transformer import TransformerLM

log = logging.getLogger("llm_lit.generation.batch_engine")

FinishReason = Literal["stop", "length", "cancelled", "error"]


class EngineClosed(UserError):
    """The engine is stopping (or stopped) and takes no new requests."""


class EngineFull(UserError):
    """The engine's waiting queue is full; try again later."""


@dataclass(frozen=True)
class Event:
    """What a request's `on_event` receives: a new token, or the end of the request (or both).

    `token` is the new id (None on an end without a token); `logprob` its log-probability under the
    model's distribution (log-softmax of the logits, before temperature or filtering) and
    `top_logprobs` the `(id, logprob)` of the most likely ids, most likely first, when the request
    asked for logprobs. `finish_reason`: None while running, then 'stop' (a stop id), 'length'
    (max_new_tokens), 'cancelled' or 'error' (with `error`, one sentence).
    """

    token: Optional[int] = None
    logprob: Optional[float] = None
    top_logprobs: Optional[list[tuple[int, float]]] = None
    finish_reason: Optional[FinishReason] = None
    error: Optional[str] = None


@dataclass
class Request:
    """One generation request.

    Args:
        prompt: The prompt's token ids (a longer one than the context keeps its last context tokens).
        sampling: max_new_tokens, temperature, top_k, top_p and seed of this request (use_cache and
            stop_tokens are not used: the engine always caches, and `stop_ids` names the stop ids).
        stop_ids: Ids that end the request (finish_reason 'stop'); they are not passed on as tokens.
        logprobs: None for no log-probabilities, else how many of the most likely ids to report with each token.
        on_event: Called from the engine thread with each `Event`, in order.
    """

    prompt: Sequence[int]
    sampling: SamplingConfig
    stop_ids: Sequence[int] = ()
    logprobs: Optional[int] = None
    on_event: Callable[[Event], None] = lambda event: None


@dataclass
class _Sequence:
    """A request inside the engine: its tokens so far, its slot, how much of its prompt is in the cache."""

    handle: int
    request: Request
    tokens: list[int]
    stop: frozenset[int]
    generator: torch.Generator
    slot: Optional[int] = None
    prefilled: int = 0
    generated: int = 0

    @property
    def prompt_done(self) -> bool:
        """Whether the whole prompt is in the slot's cache (the request then decodes one token per step)."""
        return self.slot is not None and self.prefilled >= len(self.tokens) - self.generated


class BatchEngine:
    """Runs requests in a continuously refilled batch of `max_batch_size` KV-cache slots.

    Args:
        model: The language model (a `TransformerLM`), used in eval mode and never changed.
        max_batch_size: Requests decoded together at most (KV-cache slots).
        prefill_chunk: Prompt tokens fed through the model per step at most (longer prompts take several steps).
        max_queue: Requests waiting for a slot at most; `submit` refuses more with `EngineFull`.
    """

    def __init__(self, model: TransformerLM, max_batch_size: int = 8, prefill_chunk: int = 512,
                 max_queue: int = 1024) -> None:
        if not isinstance(model, TransformerLM):
            raise UserError(f"Batched generation needs a TransformerLM, not a {type(model).__name__}; "
                            "serve a transformer checkpoint.")
        for name, value in (("max_batch_size", max_batch_size), ("prefill_chunk", prefill_chunk),
                            ("max_queue", max_queue)):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer (got {value!r}); pass e.g. 8.")
        self.model = model.eval()
        self.context_length = model.config.context_length
        self.device = model.token_embeddings.weight.device
        self.cache = SlotKVCache.for_model(model, max_batch_size)
        self.max_batch_size = max_batch_size
        self.prefill_chunk = prefill_chunk
        self.max_queue = max_queue
        self._waiting: deque[_Sequence] = deque()
        self._running: dict[int, _Sequence] = {}  # slot -> sequence
        self._cancelled: set[int] = set()
        self._handles = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._stop_now = False
        self._thread: Optional[threading.Thread] = None
        #: Forward passes run and tokens generated since the start (for metrics).
        self.steps = 0
        self.tokens_generated = 0

    # ------------------------------------------------------------------ what other threads call
    def submit(self, request: Request) -> int:
        """Queue `request`; returns its handle (for `cancel`). `EngineClosed` once stopping, `EngineFull`
        when `max_queue` requests already wait."""
        if not request.prompt:
            raise UserError("A request needs at least one prompt token; start an empty prompt from the BOS or "
                            "<|endoftext|> id.")
        vocab = self.model.config.vocab_size
        if not all(isinstance(t, int) and 0 <= t < vocab for t in request.prompt):
            raise UserError(f"A prompt token id lies outside [0, {vocab}); encode prompts with the model's tokenizer.")
        tokens = list(request.prompt)[-self.context_length:]
        generator = torch.Generator(device=self.device)
        if request.sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(request.sampling.seed)
        with self._wake:
            if self._closed:
                raise EngineClosed("The server is shutting down and takes no new requests; retry on another server.")
            if len(self._waiting) >= self.max_queue:
                raise EngineFull(f"{len(self._waiting)} requests are already waiting for a slot, the most this "
                                 "server queues; retry in a moment.")
            handle = next(self._handles)
            self._waiting.append(_Sequence(handle, request, tokens, frozenset(int(t) for t in request.stop_ids),
                                           generator))
            self._wake.notify()
        return handle

    def cancel(self, handle: int) -> None:
        """Stop request `handle` at the next step (its slot is freed then; it gets a 'cancelled' end event
        unless it already ended)."""
        with self._wake:
            self._cancelled.add(handle)
            self._wake.notify()

    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiting)

    def running(self) -> int:
        """Requests holding a slot (the batch occupancy)."""
        return len(self._running)

    def start(self) -> "BatchEngine":
        """Run the steps in a daemon thread until `stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llm_lit-batch-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, drain_timeout: float = 0.0) -> None:
        """Take no new requests; let the queued and running ones finish for up to `drain_timeout` seconds, then
        cancel what is left and end the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        deadline = time.monotonic() + drain_timeout
        while self._thread is not None and (self._waiting or self._running) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._wake:
            self._stop_now = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._finish_all("cancelled")

    # ------------------------------------------------------------------ the engine thread
    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._waiting or self._running or self._cancelled or self._stop_now):
                    self._wake.wait()
                if self._stop_now:
                    return
            try:
                self.step()
            except Exception as e:  # a bug must not leave clients waiting forever: end every request, go on
                log.exception("batch engine step failed")
                self._finish_all("error", f"The server failed while generating ({type(e).__name__}); retry.")

    def step(self) -> None:
        """One scheduling step (see the module docstring); called by the engine thread, or directly in tests."""
        self._drop_cancelled()
        self._admit()
        with torch.inference_mode():
            self._prefill()
            self._decode()

    def _drop_cancelled(self) -> None:
        with self._wake:
            cancelled, self._cancelled = self._cancelled, set()
            kept = deque(s for s in self._waiting if s.handle not in cancelled)
            dropped = [s for s in self._waiting if s.handle in cancelled]
            self._waiting = kept
        dropped += [s for s in self._running.values() if s.handle in cancelled]
        for seq in dropped:
            self._finish(seq, "cancelled")

    def _admit(self) -> None:
        free = [slot for slot in range(self.max_batch_size) if slot not in self._running]
        with self._wake:
            while free and self._waiting:
                seq = self._waiting.popleft()
                seq.slot = free.pop(0)
                self.cache.clear(seq.slot)
                self._running[seq.slot] = seq
        for seq in list(self._running.values()):  # max_new_tokens 0: nothing to compute
            if seq.request.sampling.max_new_tokens == 0:
                self._finish(seq, "length")

    def _prefill(self) -> None:
        """Feed up to `prefill_chunk` prompt tokens, oldest request first; sample each finished prompt's first token."""
        budget = self.prefill_chunk
        for seq in sorted((s for s in self._running.values() if not s.prompt_done), key=lambda s: s.handle):
            if budget <= 0:
                break
            chunk = seq.tokens[seq.prefilled:seq.prefilled + budget]
            ids = torch.tensor([chunk], dtype=torch.long, device=self.device)
            logits = forward_slots(self.model, ids, self.cache, [seq.slot], last_only=True)[:, -1]
            seq.prefilled += len(chunk)
            budget -= len(chunk)
            self.steps += 1
            if seq.prompt_done:
                self._sample([seq], logits)

    def _decode(self) -> None:
        """One forward pass over every running request whose prompt is in; a full slot recomputes its window."""
        ready = [s for s in self._running.values() if s.prompt_done]
        if not ready:
            return
        sliding = [s for s in ready if self.cache.lengths[s.slot] >= self.cache.max_seq_len]
        batched = [s for s in ready if self.cache.lengths[s.slot] < self.cache.max_seq_len]
        if batched:
            ids = torch.tensor([[s.tokens[-1]] for s in batched], dtype=torch.long, device=self.device)
            logits = forward_slots(self.model, ids, self.cache, [s.slot for s in batched])[:, -1]
            self.steps += 1
            self._sample(batched, logits)
        for seq in sliding:  # as `generate` does once the window is full: recompute the last context tokens
            self.cache.clear(seq.slot)
            window = torch.tensor([seq.tokens[-self.context_length:]], dtype=torch.long, device=self.device)
            logits = forward_slots(self.model, window, self.cache, [seq.slot], last_only=True)[:, -1]
            self.steps += 1
            self._sample([seq], logits)

    def _sample(self, seqs: list[_Sequence], logits: Tensor) -> None:
        """Pick each row's next token from `logits (len(seqs), vocab)` with its request's settings; pass it on."""
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        for row, seq in enumerate(seqs):
            if not finite[row]:
                self._finish(seq, "error", "The model's next-token scores are NaN or infinite, so nothing more "
                                           "can be generated for this prompt.")
                continue
            token = int(sample_next(logits[row:row + 1], seq.request.sampling, seq.generator)[0])
            if token in seq.stop:
                self._finish(seq, "stop")
                continue
            event = Event(token=token)
            if seq.request.logprobs is not None:
                event = self._with_logprobs(event, logits[row], seq.request.logprobs)
            seq.tokens.append(token)
            seq.generated += 1
            self.tokens_generated += 1
            if seq.generated >= seq.request.sampling.max_new_tokens:
                self._finish(seq, "length", last=event)
            else:
                self._send(seq, event)

    @staticmethod
    def _with_logprobs(event: Event, logits: Tensor, top: int) -> Event:
        """`event` with the log-probability of its token and of the `top` most likely ids, from `logits (vocab,)`."""
        logprobs = log_softmax(logits.float(), dim=-1)
        alternatives = None
        if top > 0:
            values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
            alternatives = list(zip(ids.tolist(), values.tolist()))
        return Event(token=event.token, logprob=float(logprobs[event.token]), top_logprobs=alternatives)

    def _finish(self, seq: _Sequence, reason: FinishReason, error: Optional[str] = None,
                last: Optional[Event] = None) -> None:
        """End `seq`: free its slot (zeroed after an error, so no stale non-finite values stay) and send its end."""
        if seq.slot is not None and self._running.get(seq.slot) is seq:
            del self._running[seq.slot]
            self.cache.clear(seq.slot, zero=reason == "error")
        last = last or Event()
        self._send(seq, Event(last.token, last.logprob, last.top_logprobs, reason, error))

    @staticmethod
    def _send(seq: _Sequence, event: Event) -> None:
        """Pass `event` to the request's `on_event`; a failing callback is logged, never stops the batch."""
        try:
            seq.request.on_event(event)
        except Exception:
            log.exception("on_event of request %d failed", seq.handle)

    def _finish_all(self, reason: FinishReason, error: Optional[str] = None) -> None:
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
        for seq in [*waiting, *self._running.values()]:
            self._finish(seq, reason, error)
