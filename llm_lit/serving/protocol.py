"""The request bodies of `/v1/completions` and `/v1/chat/completions`, checked field by field.

Fields follow OpenAI's API; `top_k` is an extension (as in vLLM). Unknown fields are ignored, as
OpenAI's clients send some that do not concern generation. Fields whose other values this server
does not implement (`n`, `best_of`, `echo`, `suffix`, penalties, `logit_bias`, tools, non-text
response formats and content) are accepted at their default only, and refused otherwise in one
sentence naming the field (`unsupported`).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_lit.serving.errors import APIError, bad_request

#: Most stop strings a request may give.
MAX_STOP_STRINGS = 16


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    """`stream_options`: `include_usage` adds a last chunk with the token counts."""

    include_usage: bool = False


class SamplingFields(_Body):
    """The fields both endpoints share."""

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=-1)
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch.Generator.manual_seed takes
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[dict[str, float]] = None
    user: Optional[str] = None

    def stop_strings(self) -> list[str]:
        """`stop` as a list (at most MAX_STOP_STRINGS, none empty)."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP_STRINGS:
            raise bad_request(f"stop has {len(stop)} strings; give at most {MAX_STOP_STRINGS}.", "stop")
        if any(not s for s in stop):
            raise bad_request("stop holds an empty string, which would end every reply at once; remove it.", "stop")
        return stop

    def top_k_limit(self) -> Optional[int]:
        """`top_k` as SamplingConfig takes it: None for no limit (also for 0 and -1, vLLM's 'off')."""
        return self.top_k if self.top_k and self.top_k > 0 else None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> Optional[APIError]:
        """The refusal for the first field set to a value this server does not implement (None when all are fine)."""
        checks = [
            ("n", self.n != 1, "This server returns one choice per request (n = 1); send n requests instead."),
            ("presence_penalty", self.presence_penalty != 0, "presence_penalty is not supported; leave it at 0."),
            ("frequency_penalty", self.frequency_penalty != 0, "frequency_penalty is not supported; leave it at 0."),
            ("logit_bias", bool(self.logit_bias), "logit_bias is not supported; leave it out."),
        ]
        for param, refused, message in checks:
            if refused:
                return bad_request(message, param, "unsupported_parameter")
        return None


class CompletionRequest(SamplingFields):
    """`POST /v1/completions`: continue one prompt (text, or token ids)."""

    prompt: Union[str, list[str], list[int], list[list[int]]]
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: Optional[int] = None
    suffix: Optional[str] = None

    def unsupported(self) -> Optional[APIError]:
        refusal = super().unsupported()
        if refusal is not None:
            return refusal
        if isinstance(self.prompt, list) and self.prompt and isinstance(self.prompt[0], (str, list)) \
                and len(self.prompt) != 1:
            return bad_request(f"prompt holds {len(self.prompt)} prompts; send one prompt per request.", "prompt",
                               "unsupported_parameter")
        for param, refused, message in (
            ("best_of", self.best_of not in (None, 1), "best_of is not supported; leave it out or at 1."),
            ("echo", self.echo, "echo is not supported; prepend the prompt to the text yourself."),
            ("suffix", bool(self.suffix), "suffix (insertion) is not supported; leave it out."),
        ):
            if refused:
                return bad_request(message, param, "unsupported_parameter")
        return None

    def single_prompt(self) -> Union[str, list[int]]:
        """The one prompt: a string or a list of token ids."""
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        return prompt


class ContentPart(_Body):
    """One part of a message's content; only text parts are supported."""

    type: str
    text: Optional[str] = None


class ChatMessage(_Body):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None

    def text(self, index: int) -> str:
        """The message's text (text parts joined); `APIError` for any other kind of part."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise bad_request(f"messages[{index}] holds a '{part.type}' part; this model reads text parts only.",
                                  f"messages.{index}.content", "unsupported_content")
        return "".join(part.text or "" for part in self.content)


class ChatCompletionRequest(SamplingFields):
    """`POST /v1/chat/completions`: the assistant's reply to a conversation."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Any] = None
    response_format: Optional[dict[str, Any]] = None

    def unsupported(self) -> Optional[APIError]:
        refusal = super().unsupported()
        if refusal is not None:
            return refusal
        if self.tools:
            return bad_request("tools (function calling) are not supported; leave them out.", "tools",
                               "unsupported_parameter")
        if self.response_format and self.response_format.get("type", "text") != "text":
            return bad_request("Only the 'text' response_format is supported; leave response_format out.",
                               "response_format", "unsupported_parameter")
        if self.top_logprobs and not self.logprobs:
            return bad_request("top_logprobs needs logprobs: true; set both.", "top_logprobs")
        return None

    def requested_max_tokens(self) -> Optional[int]:
        """`max_completion_tokens`, else `max_tokens` (OpenAI renamed the field)."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def parse_body(raw: bytes, model: type[_Body]) -> Any:
    """The request `model` parsed from the JSON bytes `raw`; `APIError` (400) naming the first problem."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"The request body is not valid JSON ({e}); send a JSON object.", code="invalid_json") \
            from None
    if not isinstance(data, dict):
        raise bad_request(f"The request body is a JSON {type(data).__name__}, not an object; send a JSON object "
                          "with the request's fields.", code="invalid_json")
    try:
        request = model.model_validate(data)
    except ValidationError as e:
        raise _field_error(e) from None
    refusal = request.unsupported()
    if refusal is not None:
        raise refusal
    return request


def _field_error(error: ValidationError) -> APIError:
    """One sentence for the first problem pydantic found, naming the field (a field of several allowed types
    gets one error per type: then the sentence says the type is wrong)."""
    errors = error.errors(include_url=False)
    first = errors[0]
    param = _param(first["loc"])
    if first["type"] == "missing":
        return bad_request(f"The field '{param}' is required; add it to the request.", param, "missing_field")
    got = json.dumps(first.get("input"), default=str)
    got = got if len(got) <= 60 else got[:57] + "..."
    if sum(_param(e["loc"]) == param for e in errors) > 1:
        return bad_request(f"The field '{param}' has the wrong type (got {got}); see the OpenAI API reference for "
                           "the types it takes.", param, "invalid_field")
    message = first["msg"][:1].lower() + first["msg"][1:]
    return bad_request(f"The field '{param}' is invalid: {message} (got {got}); fix this field.", param,
                       "invalid_field")


def _param(loc: tuple) -> Optional[str]:
    """The dotted field name of a pydantic error location, less its type tags."""
    return ".".join(str(part) for part in loc if not _is_type_tag(part)) or None


def _is_type_tag(part: Any) -> bool:
    """pydantic's location parts that name a union member (e.g. 'str', 'list[int]'), not a field."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)
