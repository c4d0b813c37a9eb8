"""One request's generation seen from the event loop: the engine's events on an asyncio queue, turned into
pieces of text (stop strings applied), and ended early when the client goes away.

    job = Job.start(engine, request_ids, sampling, stop_ids, logprobs=None)
    job.watch(request.receive)                  # a disconnect cancels the job (its slot is freed next step)
    async for piece in job.pieces(TextStream(vocab, stop)):
        ...                                     # piece.text, piece.tokens, piece.finish_reason on the last
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Optional, Sequence

from llm_lit.generation.batch_engine import BatchEngine, EngineClosed, EngineFull, Event, Request
from llm_lit.generation.sampling import SamplingConfig
from llm_lit.generation.text_stream import TextStream
from llm_lit.serving.errors import APIError


class ClientGone(Exception):
    """The client disconnected; nothing more is sent."""


@dataclass
class Piece:
    """New text of a reply, the tokens behind it (with their log-probabilities when asked for), and, on the last
    piece, why the reply ended ('stop' or 'length')."""

    text: str
    tokens: list[Event] = field(default_factory=list)
    finish_reason: Optional[str] = None


class Job:
    """A request in the engine, read from the event loop (create it with `Job.start`, inside the loop).

    `prompt_tokens` / `completion_tokens` count the request's tokens; `first_token_at` is the
    `time.perf_counter()` of its first token (None before).
    """

    def __init__(self, engine: BatchEngine, prompt_tokens: int) -> None:
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Optional[Event]] = asyncio.Queue()
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.first_token_at: Optional[float] = None
        self.finished = False
        self.handle: Optional[int] = None
        self._watcher: Optional[asyncio.Task] = None

    @classmethod
    def start(cls, engine: BatchEngine, prompt: Sequence[int], sampling: SamplingConfig, stop_ids: Sequence[int],
              logprobs: Optional[int] = None) -> "Job":
        """Submit the request; `APIError` 429 when the queue is full, 503 when the server is shutting down."""
        job = cls(engine, min(len(prompt), engine.context_length))
        request = Request(list(prompt), sampling, stop_ids, logprobs, on_event=job._on_event)
        try:
            job.handle = engine.submit(request)
        except EngineFull as e:
            raise APIError(429, str(e), code="queue_full") from None
        except EngineClosed as e:
            raise APIError(503, str(e), code="shutting_down") from None
        return job

    def _on_event(self, event: Event) -> None:
        """Called from the engine thread: hand `event` to the loop (dropped once the loop has closed)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:
            pass

    def watch(self, receive: Callable[[], Awaitable[dict]]) -> None:
        """Cancel this job as soon as `receive` (the ASGI channel, its body already read) reports a disconnect."""
        async def wait_for_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not self.finished:
                self.cancel()
                self.queue.put_nowait(None)  # wakes the reader: the client is gone

        self._watcher = asyncio.ensure_future(wait_for_disconnect())

    def cancel(self) -> None:
        """Stop the request (idempotent); the engine frees its slot at its next step."""
        if not self.finished:
            self.finished = True
            if self.handle is not None:
                self.engine.cancel(self.handle)
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()

    async def pieces(self, text: TextStream) -> AsyncIterator[Piece]:
        """The reply as pieces of text; `ClientGone` when the client left, `APIError` (500) when generation failed.

        A piece is yielded for each token that shows new text, and for every token when
        log-probabilities were asked for (a token may then come with empty text, its text held
        back until a stop string is ruled out). The last piece has `finish_reason` set.
        """
        try:
            while True:
                event = await self.queue.get()
                if event is None:
                    raise ClientGone()
                piece = Piece("")
                if event.token is not None:
                    self.completion_tokens += 1
                    if self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                    piece.text, stopped = text.push(event.token)
                    piece.tokens.append(event)
                    if stopped:
                        piece.finish_reason = "stop"
                        yield piece
                        return
                if event.finish_reason in ("stop", "length"):
                    piece.text += text.finish()
                    piece.finish_reason = event.finish_reason
                    self.finished = True
                    yield piece
                    return
                if event.finish_reason == "cancelled":
                    self.finished = True
                    raise APIError(503, "The server shut down before this request finished; send it again.",
                                   code="shutting_down")
                if event.finish_reason == "error":
                    self.finished = True
                    raise APIError(500, event.error or "Generation failed; retry.", code="generation_failed")
                if piece.text or (piece.tokens and piece.tokens[0].logprob is not None):
                    yield piece
        finally:
            self.cancel()
