"""The JSON of OpenAI's answers: completions and chat completions, whole or as stream chunks, their
`usage` and `logprobs`, and the server-sent-event framing of a stream (`data: {...}`, then `data: [DONE]`)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from llm_lit.generation.batch_engine import Event
from llm_lit.generation.text_stream import TextStream

DONE = "data: [DONE]\n\n"


def sse(data: dict[str, Any]) -> str:
    """One server-sent event carrying `data` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass
class Reply:
    """One answer being built: its id, creation time, the model's name and the kind of endpoint."""

    model: str
    chat: bool
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion" if self.chat else "text_completion") + (".chunk" if chunk and self.chat else "")
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish_reason: str, logprobs: Optional[dict[str, Any]],
              prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The non-streamed answer."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                      "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self._head(False), "choices": [choice], "usage": usage(prompt_tokens, completion_tokens)}

    def chunk(self, text: str, finish_reason: Optional[str] = None, logprobs: Optional[dict[str, Any]] = None,
              first: bool = False) -> dict[str, Any]:
        """One stream chunk: new text (a chat's first chunk also carries the assistant role)."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else ({"content": text} if text
                                                                                          else {})
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The last chunk of a stream asked for with `stream_options.include_usage`."""
        return {**self._head(True), "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


class Logprobs:
    """Log-probabilities of a reply's tokens in the endpoint's format, gathered as the tokens come.

    Completions: `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}` (OpenAI's legacy
    format). Chat: `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}`.
    """

    def __init__(self, text: TextStream, chat: bool, top: int) -> None:
        self.text = text
        self.chat = chat
        self.top = top
        self.offset = 0  # characters of the reply's text before the next token

    def of(self, tokens: list[Event]) -> Optional[dict[str, Any]]:
        """The entry for `tokens` (a piece's, or a whole reply's)."""
        strings = [self.text.token_text(e.token) for e in tokens]
        if self.chat:
            content = []
            for event, string in zip(tokens, strings):
                alternatives = [{"token": self.text.token_text(i), "logprob": lp,
                                 "bytes": list(self.text.token_text(i).encode())}
                                for i, lp in (event.top_logprobs or [])[:self.top]]
                content.append({"token": string, "logprob": event.logprob, "bytes": list(string.encode()),
                                "top_logprobs": alternatives})
            return {"content": content}
        offsets = []
        for string in strings:
            offsets.append(self.offset)
            self.offset += len(string)
        top = None
        if self.top > 0:
            top = [{self.text.token_text(i): lp for i, lp in (e.top_logprobs or [])[:self.top]} for e in tokens]
        return {"tokens": strings, "token_logprobs": [e.logprob for e in tokens], "top_logprobs": top,
                "text_offset": offsets}
