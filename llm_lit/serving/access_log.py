"""One access-log line per request, and its metrics: an ASGI middleware around the whole app.

    127.0.0.1:50312 "POST /v1/chat/completions" 200 prompt_tokens=12 completion_tokens=40 ttft_ms=15.2 total_ms=321.0
    127.0.0.1:50318 "POST /v1/completions" 400 total_ms=0.9 error="The field 'temperature' is invalid: ..."

A handler fills the request's `AccessRecord` (`scope["state"]["access"]`): token counts, the
time of the first token, the error sentence, the generation job. Whatever way the request
ends (answered, refused, the client gone, the handler failing), the middleware cancels a job
still running, so no batch slot outlives its request.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from llm_lit.serving.metrics import ServerMetrics

log = logging.getLogger("llm_lit.serve.access")


@dataclass
class AccessRecord:
    """What the access log and the metrics say of one request."""

    started: float = field(default_factory=time.perf_counter)
    status: Optional[int] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: Optional[float] = None
    error: Optional[str] = None
    disconnected: bool = False
    job: Any = None  # the request's `serving.jobs.Job`, if it started one

    def line(self, client: str, method: str, path: str) -> str:
        """The log line (see the module docstring)."""
        now = time.perf_counter()
        parts = [f'{client} "{method} {path}" {self.status}']
        if self.prompt_tokens or self.completion_tokens:
            parts.append(f"prompt_tokens={self.prompt_tokens} completion_tokens={self.completion_tokens}")
        if self.first_token_at is not None:
            parts.append(f"ttft_ms={(self.first_token_at - self.started) * 1000:.1f}")
        parts.append(f"total_ms={(now - self.started) * 1000:.1f}")
        if self.disconnected:
            parts.append("client_disconnected")
        if self.error:
            parts.append(f"error={json.dumps(self.error, ensure_ascii=False)}")
        return " ".join(parts)


class AccessLog:
    """ASGI middleware: an `AccessRecord` for each HTTP request, logged and counted when it ends."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = AccessRecord()
        scope.setdefault("state", {})["access"] = record

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note)
        except BaseException:
            record.status = record.status or 500
            raise
        finally:
            self.metrics.in_flight.dec()
            if record.job is not None:
                record.job.cancel()
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            path = scope.get("path", "")
            status = record.status or 499  # no response started: the client left first
            record.status = status
            log.info(record.line(where, scope.get("method", ""), path))
            ttft = record.first_token_at - record.started if record.first_token_at is not None else None
            self.metrics.observe(path, status, record.prompt_tokens, record.completion_tokens, ttft,
                                 time.perf_counter() - record.started)
