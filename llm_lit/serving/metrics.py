"""Prometheus metrics of the server (`GET /metrics`, text format): requests by endpoint and status, tokens,
time to first token, request duration, requests in flight, queue depth and batch occupancy."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from llm_lit.generation.batch_engine import BatchEngine

#: Paths counted under their own name; any other is counted as 'other' (so unknown paths add no series).
ENDPOINTS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics:
    """The server's metrics, in a registry of their own (so several servers in one process never collide)."""

    def __init__(self, engine: BatchEngine) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("llm_lit_requests", "HTTP requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("llm_lit_prompt_tokens", "Prompt tokens of the requests generated for.",
                                     registry=r)
        self.completion_tokens = Counter("llm_lit_completion_tokens", "Tokens generated.", registry=r)
        self.time_to_first_token = Histogram("llm_lit_time_to_first_token_seconds",
                                             "Seconds from a request's arrival to its first generated token.",
                                             buckets=_LATENCY_BUCKETS, registry=r)
        self.duration = Histogram("llm_lit_request_duration_seconds", "Seconds from a request's arrival to the end "
                                  "of its answer.", buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("llm_lit_requests_in_flight", "HTTP requests being answered.", registry=r)
        Gauge("llm_lit_queue_depth", "Requests waiting for a batch slot.", registry=r).set_function(engine.waiting)
        Gauge("llm_lit_batch_occupancy", "Requests holding a batch slot (being generated for).",
              registry=r).set_function(engine.running)
        Gauge("llm_lit_batch_slots", "Batch slots (--max_batch_size).", registry=r).set(engine.max_batch_size)
        Gauge("llm_lit_kv_cache_bytes", "Bytes of the preallocated KV cache.", registry=r).set(engine.cache.nbytes())
        Gauge("llm_lit_engine_steps", "Forward passes the engine has run.", registry=r).set_function(
            lambda: engine.steps)

    def observe(self, path: str, status: int, prompt_tokens: int, completion_tokens: int,
                time_to_first_token: float | None, duration: float) -> None:
        """Count one answered request."""
        endpoint = path if path in ENDPOINTS else "other"
        self.requests.labels(endpoint, str(status)).inc()
        if endpoint in ENDPOINTS[:2]:
            self.prompt_tokens.inc(prompt_tokens)
            self.completion_tokens.inc(completion_tokens)
            self.duration.observe(duration)
            if time_to_first_token is not None:
                self.time_to_first_token.observe(time_to_first_token)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
