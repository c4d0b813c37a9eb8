"""The HTTP app: OpenAI's `/v1/completions`, `/v1/chat/completions` and `/v1/models`, plus `/health` and
`/metrics`, on FastAPI.

Every request ends in an answer of OpenAI's shape: the completion (whole, or streamed as
server-sent events ending with `data: [DONE]`), or an error JSON with a 4xx status for the
client's mistakes (bad JSON, a field of the wrong type, a prompt longer than the context,
max_tokens above the limit, an unknown model, a missing API key) and a 5xx only for the
server's own failures, never with a traceback. Bodies are parsed by hand (`protocol.parse_body`)
so that every such problem is one sentence naming the field.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from llm_lit.generation.text_stream import TextStream
from llm_lit.serving.access_log import AccessLog, AccessRecord
from llm_lit.serving.errors import APIError
from llm_lit.serving.host import DEFAULT_COMPLETION_TOKENS, ServedModel
from llm_lit.serving.jobs import ClientGone, Job
from llm_lit.serving.metrics import CONTENT_TYPE, ServerMetrics
from llm_lit.serving.protocol import ChatCompletionRequest, CompletionRequest, parse_body
from llm_lit.serving.responses import DONE, Logprobs, Reply, sse

log = logging.getLogger("llm_lit.serve")

#: The answer to a request still running when the shutdown's drain bound passes.
SHUT_DOWN = APIError(503, "The server shut down before this request finished; send it again.", code="shutting_down")
#: The largest request body accepted (a context's worth of text is far smaller).
MAX_BODY_BYTES = 8 * 1024 * 1024


def build_app(served: ServedModel, api_key: Optional[str] = None, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The ASGI app serving `served` (the engine starts and stops with the app's lifespan).

    With `api_key`, requests to `/v1/...` need the header `Authorization: Bearer <api_key>`;
    `/health` and `/metrics` stay open (for load balancers and Prometheus).
    """
    metrics = ServerMetrics(served.engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        served.engine.start()
        yield
        served.engine.stop()  # the server has drained (or cancelled) its requests by now

    app = FastAPI(title="llm_lit", summary="An llm_lit model behind OpenAI's API.", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise APIError(401, "Incorrect or missing API key; send it as the header 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = {404: f"There is no endpoint {request.url.path}; the endpoints are /v1/completions, "
                        "/v1/chat/completions, /v1/models, /health and /metrics.",
                   405: f"{request.url.path} does not take {request.method} requests; see the OpenAI API reference "
                        "for its method."}.get(error.status_code, str(error.detail))
        return error_response(request, APIError(error.status_code, message))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        engine = served.engine
        return {"status": "ok", "model": served.name, "running": engine.running(), "waiting": engine.waiting(),
                "max_batch_size": engine.max_batch_size}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except APIError as e:
            return error_response(request, e)
        return JSONResponse({"object": "list", "data": [model_card(served)]})

    @app.get("/v1/models/{name:path}")
    async def model(request: Request, name: str) -> Response:
        try:
            authorize(request)
            served.check_model(name)
        except APIError as e:
            return error_response(request, e)
        return JSONResponse(model_card(served))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    async def generate(request: Request, chat: bool) -> Response:
        record: AccessRecord = request.state.access
        try:
            authorize(request)
            raw = await read_body(request, max_body_bytes)
            body = parse_body(raw, ChatCompletionRequest if chat else CompletionRequest)
            served.check_model(body.model)
            if chat:
                prompt = served.chat_prompt(body)
                max_tokens = served.max_tokens(body.requested_max_tokens(), served.default_chat_tokens(len(prompt)))
                top = (body.top_logprobs or 0) if body.logprobs else None
            else:
                prompt = served.completion_prompt(body)
                max_tokens = served.max_tokens(body.max_tokens, DEFAULT_COMPLETION_TOKENS)
                top = body.logprobs
            stop = body.stop_strings() + (served.chat.stop_strings if chat else [])
            sampling = served.sampling(body, max_tokens)
            job = Job.start(served.engine, prompt, sampling, served.stop_ids, logprobs=top)
            record.job, record.prompt_tokens = job, job.prompt_tokens
            job.watch(request.receive)
            text = TextStream(served.tokenizer.vocab, stop)
            reply = Reply(served.name, chat)
            logprobs = Logprobs(text, chat, top) if top is not None else None
            if body.stream:
                return EventStream(stream(job, text, reply, logprobs, body.include_usage(), record), record)
            return JSONResponse(await whole(job, text, reply, logprobs, record))
        except APIError as e:
            return error_response(request, e)
        except ClientGone:
            record.disconnected = True
            return Response(status_code=499)
        except asyncio.CancelledError:  # the shutdown's drain bound passed: answer instead of a traceback
            return error_response(request, SHUT_DOWN)
        except Exception:
            log.exception("request failed")
            return error_response(request, APIError(500, "The server failed on this request; retry, and report it "
                                                         "if it happens again."))

    return AccessLog(app, metrics)


def model_card(served: ServedModel) -> dict[str, Any]:
    """The entry of `GET /v1/models` for the served model."""
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "llm_lit",
            "max_model_len": served.context_length}


def error_response(request: Request, error: APIError) -> Response:
    """OpenAI's error JSON for `error`, its sentence kept for the access log."""
    record: Optional[AccessRecord] = getattr(request.state, "access", None)
    if record is not None:
        record.error = error.message
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body; 413 past `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"The request body is larger than {limit // (1024 * 1024)} MiB; send a shorter "
                                "prompt.", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def whole(job: Job, text: TextStream, reply: Reply, logprobs: Optional[Logprobs],
                record: AccessRecord) -> dict[str, Any]:
    """The non-streamed answer, once the reply has ended."""
    tokens, finish_reason = [], "length"
    try:
        async for piece in job.pieces(text):
            tokens += piece.tokens
            finish_reason = piece.finish_reason or finish_reason
    finally:
        note(record, job)
    return reply.whole(text.text, finish_reason, logprobs.of(tokens) if logprobs else None, job.prompt_tokens,
                       job.completion_tokens)


async def stream(job: Job, text: TextStream, reply: Reply, logprobs: Optional[Logprobs], include_usage: bool,
                 record: AccessRecord) -> AsyncIterator[str]:
    """The streamed answer as server-sent events: chunks of text, then the usage when asked for, then [DONE]."""
    try:
        if reply.chat:
            yield sse(reply.chunk("", first=True))
        async for piece in job.pieces(text):
            note(record, job)
            yield sse(reply.chunk(piece.text, piece.finish_reason,
                                  logprobs.of(piece.tokens) if logprobs and piece.tokens else None))
        if include_usage:
            yield sse(reply.usage_chunk(job.prompt_tokens, job.completion_tokens))
        yield DONE
    except ClientGone:
        record.disconnected = True
    except APIError as e:  # the status line is sent already: the error is the stream's last event
        record.error = e.message
        yield sse(e.body())
        yield DONE
    finally:
        note(record, job)


def note(record: AccessRecord, job: Job) -> None:
    """Copy the job's token counts and first-token time into the access record."""
    record.completion_tokens = job.completion_tokens
    record.first_token_at = job.first_token_at


class EventStream(Response):
    """A `text/event-stream` response sent from an async iterator of events, which is closed whatever happens
    (so its generation job is cancelled when the client goes away mid-stream)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str], record: AccessRecord) -> None:
        self.events = events
        self.record = record
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for event in self.events:
                await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke under the write
            self.record.disconnected = True
        except asyncio.CancelledError:  # the shutdown's drain bound passed: end the stream with an error event
            self.record.error = SHUT_DOWN.message
            await self.events.aclose()
            last = (sse(SHUT_DOWN.body()) + DONE).encode()
            await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            await self.events.aclose()
