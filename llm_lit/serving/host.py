"""The served model: its tokenizer, prompt policy, chat format and batch engine, and the limits a request
must keep; turns a checked request body into the engine's prompt ids and sampling settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Union

from llm_lit.errors import UserError
from llm_lit.generation.batch_engine import BatchEngine
from llm_lit.generation.chat_format import ChatFormat
from llm_lit.generation.prompts import PromptPolicy
from llm_lit.generation.sampling import SamplingConfig
from llm_lit.model import TransformerLM
from llm_lit.serving.errors import APIError, bad_request
from llm_lit.serving.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from tokenizer import AnyTokenizer

#: max_tokens of a completion request that gives none (OpenAI's default).
DEFAULT_COMPLETION_TOKENS = 16
#: A chat request without max_tokens may fill the rest of the context, and at least this many tokens.
MIN_DEFAULT_CHAT_TOKENS = 16


@dataclass
class ServedModel:
    """What the server serves, and its limits.

    Args:
        model: The language model (eval mode, on its device).
        tokenizer: Its tokenizer.
        name: The model id clients send (`GET /v1/models` lists it).
        engine: The batch engine that runs `model`.
        chat: How chat messages become a prompt.
        max_tokens_limit: The most tokens one request may ask for.
        truncate: Keep the last context_length tokens of a longer prompt instead of refusing it.
    """

    model: TransformerLM
    tokenizer: AnyTokenizer
    name: str
    engine: BatchEngine
    chat: ChatFormat
    max_tokens_limit: int
    truncate: bool = False

    def __post_init__(self) -> None:
        self.context_length = self.model.config.context_length
        self.policy = PromptPolicy(self.tokenizer, self.context_length, truncate=self.truncate,
                                   truncate_setting="the server option --truncate left")
        self.stop_ids = self.policy.stop_ids()
        self.created = int(time.time())

    # ------------------------------------------------------------------ checks
    def check_model(self, requested: Optional[str]) -> None:
        """404 unless `requested` (the body's `model`) is this server's model or left out."""
        if requested is not None and requested != self.name:
            raise APIError(404, f"The model '{requested}' does not exist; this server serves '{self.name}' "
                                "(GET /v1/models lists it).", "model", "model_not_found")

    def max_tokens(self, requested: Optional[int], default: int) -> int:
        """`requested` (or `default`, capped by the limit) after checking it against the limit."""
        if requested is None:
            return min(default, self.max_tokens_limit)
        if requested > self.max_tokens_limit:
            raise bad_request(f"max_tokens is {requested}, more than this server's limit of {self.max_tokens_limit}; "
                              f"ask for at most {self.max_tokens_limit}.", "max_tokens", "max_tokens_exceeded")
        return requested

    def sampling(self, body: SamplingFields, max_tokens: int) -> SamplingConfig:
        """The engine's sampling settings for a checked request body."""
        try:
            return SamplingConfig(max_new_tokens=max_tokens, temperature=body.temperature, top_k=body.top_k_limit(),
                                  top_p=body.top_p if body.top_p < 1 else None, seed=body.seed)
        except UserError as e:  # the body's own checks make this unlikely; still one sentence, never a 500
            raise bad_request(str(e)) from None

    # ------------------------------------------------------------------ prompts
    def completion_prompt(self, body: CompletionRequest) -> list[int]:
        """The prompt ids of a completion request (text through the prompt policy, or ids as given)."""
        prompt: Union[str, list[int]] = body.single_prompt()
        if isinstance(prompt, str):
            return self._encode(prompt, "prompt", "prompt")
        vocab = self.model.config.vocab_size
        if not prompt:
            raise bad_request("prompt is an empty list of token ids; give at least one id.", "prompt")
        if not all(0 <= t < vocab for t in prompt):
            raise bad_request(f"prompt holds a token id outside [0, {vocab}); use ids of this model's tokenizer.",
                              "prompt")
        if len(prompt) > self.context_length and not self.truncate:
            raise self._too_long(len(prompt), "prompt", "prompt")
        return list(prompt)

    def chat_prompt(self, body: ChatCompletionRequest) -> list[int]:
        """The prompt ids of a conversation (rendered by the chat format, then through the prompt policy)."""
        messages = [{"role": m.role, "content": m.text(i)} for i, m in enumerate(body.messages)]
        try:
            text = self.chat.render(messages)
        except UserError as e:
            raise bad_request(str(e), "messages", "invalid_messages") from None
        return self._encode(text, "messages", "conversation")

    def default_chat_tokens(self, prompt_tokens: int) -> int:
        """max_tokens of a chat request that gives none: the rest of the context, at least MIN_DEFAULT_CHAT_TOKENS."""
        return max(MIN_DEFAULT_CHAT_TOKENS, self.context_length - prompt_tokens)

    def _encode(self, text: str, param: str, what: str) -> list[int]:
        """The ids of `text` by the prompt policy; 400 naming `param` when it is longer than the context."""
        try:
            return self.policy.encode(text, what=what)
        except UserError as e:
            length = len(self.tokenizer.encode(text)) + (self.tokenizer.role_id("bos") is not None)
            if length > self.context_length:
                raise self._too_long(length, param, what) from None
            raise bad_request(str(e), param) from None

    def _too_long(self, length: int, param: str, what: str) -> APIError:
        return bad_request(f"The {what} is {length} tokens long, more than the model's context of "
                           f"{self.context_length} tokens; shorten it (or start the server with --truncate left to "
                           f"keep its last {self.context_length} tokens).", param, "context_length_exceeded")
