"""The prompt policy: how a text prompt becomes a model's input ids, and which ids end a continuation.

Written once, used by everything that generates (`predict` and the samples of a run, `chat`,
evaluation, the server):

* a prompt starts with the tokenizer's BOS token when it has that role; an empty prompt is the
  BOS alone, or `<|endoftext|>` when there is no BOS;
* a prompt longer than the context is refused in one sentence, or, with `truncate`, passed on
  whole (generation keeps its last `context_length` tokens, with a warning);
* a continuation ends at the ids of `stop_tokens` when given, else at the tokenizer's EOS role,
  else at `<|endoftext|>` when the tokenizer has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from llm_lit.errors import UserError
from tokenizer import END_OF_TEXT, AnyTokenizer

__all__ = ["END_OF_TEXT", "PromptPolicy"]


@dataclass(frozen=True)
class PromptPolicy:
    """The prompt and stop-token rules for one tokenizer and context length.

    Args:
        tokenizer: The model's tokenizer (BPE or char).
        context_length: The model's context, in tokens.
        truncate: Keep the last `context_length` tokens of a longer prompt instead of refusing it.
        stop_tokens: Special tokens that end a continuation (None: the EOS role, else <|endoftext|>).
        stop_setting: The setting that names `stop_tokens`, for messages (e.g. `--stop_tokens`).
        truncate_setting: The flag that turns truncation on, for messages.
    """

    tokenizer: AnyTokenizer
    context_length: int
    truncate: bool = False
    stop_tokens: Optional[Sequence[str]] = None
    stop_setting: str = "model.sampling.stop_tokens"
    truncate_setting: str = "--model.truncate_prompts true"

    def start_id(self) -> Optional[int]:
        """The id an empty prompt starts from: the BOS role, else <|endoftext|>, else None."""
        bos = self.tokenizer.role_id("bos")
        return bos if bos is not None else self.tokenizer.token_to_id(END_OF_TEXT)

    def encode(self, prompt: str, what: str = "prompt") -> list[int]:
        """The ids of `prompt` (`(seq,)`), after the BOS when the tokenizer has one. With `truncate` a prompt may be
        longer than the context: `generate` keeps its last `context_length` tokens, with a warning."""
        bos = self.tokenizer.role_id("bos")
        ids = ([bos] if bos is not None else []) + self.tokenizer.encode(prompt)
        if not ids:
            start = self.start_id()
            if start is None:
                raise UserError("An empty prompt needs an <|endoftext|> or BOS token to start from; "
                                "pass a non-empty prompt.")
            ids = [start]
        if len(ids) > self.context_length and not self.truncate:
            raise UserError(f"The {what} {prompt[:30]!r}... is {len(ids)} tokens long, more than the model's "
                            f"context of {self.context_length} tokens; shorten it or pass {self.truncate_setting} "
                            f"to keep its last {self.context_length} tokens.")
        return ids

    def encode_all(self, prompts: Sequence[str], what: str = "prompt") -> list[list[int]]:
        """`encode` of each prompt."""
        return [self.encode(prompt, what) for prompt in prompts]

    def stop_ids(self) -> list[int]:
        """The ids that end a continuation (see the module docstring); `UserError` for an unknown stop token."""
        if self.stop_tokens is None:
            eos = self.tokenizer.role_id("eos")
            if eos is not None:
                return [eos]
            end = self.tokenizer.token_to_id(END_OF_TEXT)
            return [end] if end is not None else []
        ids = []
        for name in self.stop_tokens:
            if name not in self.tokenizer.special_tokens:
                raise UserError(f"{self.stop_setting} names {name!r}, which is not a special token of the tokenizer "
                                f"(it has {self.tokenizer.special_tokens}); pick one of those.")
            ids.append(self.tokenizer.token_to_id(name))
        return ids
