"""Text requests as token ids, by lm-evaluation-harness's conventions (so scores match `--model hf`).

* A (context, continuation) pair: trailing white space of the context moves to the front of the
  continuation; the context is encoded alone, the two together, and the continuation's ids are
  those of the whole past the context's length (so a token that spans the boundary counts as
  continuation).
* An empty context is the start token (the BOS role, else `<|endoftext|>`: `PromptPolicy.start_id`,
  the harness's `prefix_token_id`); when the continuation's first id already is that token, it
  becomes the context instead.
* A text scored whole (perplexity) is cut into windows that each predict up to `context_length`
  new tokens: the first after the start token, each later one after as many of the tokens before
  it as fit, so every token is predicted once, with the longest context the model takes.
* With `add_bos`, every non-empty context starts with the BOS token, as `predict` prompts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llm_lit.errors import UserError
from llm_lit.evals.scoring import TokenRequest
from llm_lit.generation.prompts import PromptPolicy
from tokenizer import AnyTokenizer


@dataclass(frozen=True)
class RequestEncoder:
    """Turns text requests into token requests for one tokenizer and context length.

    Args:
        tokenizer: The model's tokenizer.
        context_length: The model's context, in tokens.
        start_id: The id an empty context (and a rolling text) starts from; None: such requests are refused.
        bos_id: Prepended to every non-empty context when not None.
    """

    tokenizer: AnyTokenizer
    context_length: int
    start_id: Optional[int]
    bos_id: Optional[int] = None

    @classmethod
    def from_policy(cls, policy: PromptPolicy, add_bos: Optional[bool] = None) -> "RequestEncoder":
        """The encoder of a prompt policy: its start id; the BOS before contexts when `add_bos` (None: when the
        tokenizer has a BOS role, as predict does; that is never for a tokenizer without one)."""
        bos = policy.tokenizer.role_id("bos")
        if add_bos and bos is None:
            raise UserError("add_bos_token is set but the tokenizer has no BOS role; leave it unset or false.")
        use_bos = bos is not None if add_bos is None else add_bos
        return cls(policy.tokenizer, policy.context_length, policy.start_id(), bos if use_bos else None)

    def _start(self, what: str) -> int:
        if self.start_id is None:
            raise UserError(f"A {what} needs a token to start from, and the tokenizer has neither a BOS role nor "
                            "<|endoftext|>; give the task a non-empty context or use a tokenizer with one of them.")
        return self.start_id

    def pair(self, context: str, continuation: str) -> TokenRequest:
        """`(context ids, continuation ids)` of a loglikelihood request (see the module docstring)."""
        if context == "":
            continuation_ids = self.tokenizer.encode(continuation)
            start = self._start("request with an empty context")
            if continuation_ids and continuation_ids[0] == start:
                return continuation_ids[:1], continuation_ids[1:]
            return [start], continuation_ids
        stripped = context.rstrip()
        if len(stripped) < len(context):
            context, continuation = stripped, context[len(stripped):] + continuation
        context_ids = self.tokenizer.encode(context)
        whole = self.tokenizer.encode(context + continuation)
        continuation_ids = whole[len(context_ids):]
        if self.bos_id is not None:
            context_ids = [self.bos_id] + context_ids
        if not context_ids:  # a context of white space only: it moved into the continuation
            context_ids = [self._start("request whose context is only white space")]
        return context_ids, continuation_ids

    def prompt(self, context: str) -> list[int]:
        """The ids a generation continues: the context (after the BOS with `bos_id`), or the start token alone."""
        ids = ([self.bos_id] if self.bos_id is not None else []) + self.tokenizer.encode(context)
        return ids or [self._start("generation from an empty context")]

    def rolling(self, text: str) -> list[TokenRequest]:
        """The windows that score `text` whole (see the module docstring), as token requests."""
        tokens = self.tokenizer.encode(text)
        if not tokens:
            return []
        return rolling_windows(tokens, self._start("text scored whole"), self.context_length)


def rolling_windows(tokens: list[int], start_id: int, context_length: int) -> list[TokenRequest]:
    """Windows predicting each of `tokens` once: up to `context_length` new tokens each, the first after
    `start_id`, each later one after the tokens before it that fit in the context."""
    windows = []
    done = 0
    while done < len(tokens):
        end = min(done + context_length, len(tokens))
        context = [start_id] if done == 0 else tokens[max(end - context_length - 1, 0):done]
        windows.append((context, tokens[done:end]))
        done = end
    return windows
