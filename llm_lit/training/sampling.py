"""`SamplingHooks`: how a `LanguageModel` continues prompts, for `predict` and the samples at each validation.

Prompts become ids and continuations stop by one policy (`llm_lit.generation.prompts`), shared with
`chat`, `serve` and `eval`; tokens are drawn by `llm_lit.generation.sampling.generate`.
"""

from __future__ import annotations

from typing import Any

from llm_lit.errors import UserError
from llm_lit.generation.prompts import PromptPolicy
from llm_lit.generation.sampling import generate
from llm_lit.training.reporting import log_samples


class SamplingHooks:
    """Mixed into `LanguageModel`: uses its `model`, `config`, `tokenizer`, `sampling`, `sample_prompts`,
    `truncate_prompts`, `global_step` and `checkpoint_step`."""

    def prompt_policy(self) -> PromptPolicy:
        """How prompts become ids and which ids end a continuation (`llm_lit.generation.prompts`)."""
        if self.tokenizer is None:
            raise UserError("The model has no tokenizer; predict from a checkpoint written by llm_lit fit "
                            "(--ckpt_path PATH).")
        return PromptPolicy(self.tokenizer, self.config.context_length, self.truncate_prompts,
                            self.sampling.stop_tokens)

    def continue_texts(self, prompts: list[str]) -> list[dict[str, Any]]:
        """Continue each prompt with `self.sampling`; returns `{"prompt", "completion", "num_tokens"}` per prompt."""
        policy = self.prompt_policy()
        outputs = generate(self.model, policy.encode_all(prompts), self.sampling, stop_tokens=policy.stop_ids())
        return [{"prompt": p, "completion": self.tokenizer.decode(out), "num_tokens": len(out)}
                for p, out in zip(prompts, outputs)]

    def predict_step(self, batch: list[str], batch_idx: int) -> list[dict[str, Any]]:
        """Continue a batch of prompt strings (see `continue_texts`)."""
        return self.continue_texts(batch)

    def log_validation_samples(self) -> None:
        """Continue `sample_prompts` and show them (console and loggers; see `reporting.log_samples`).
        Every rank generates (sharded models need all ranks in each forward); rank 0 shows them."""
        if not self.sample_prompts or self.tokenizer is None:
            return
        log_samples(self, self.continue_texts(self.sample_prompts), f"samples at step {self.trained_steps}")

    @property
    def trained_steps(self) -> int:
        """Optimizer steps the weights have had: the trainer's count in fit, the checkpoint's when evaluating one
        (validate and test start their own count at 0)."""
        return self.global_step if self.checkpoint_step is None or self.global_step else self.checkpoint_step
