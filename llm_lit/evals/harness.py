"""`LlmLitLM`: an lm-evaluation-harness model over any llm_lit model and tokenizer.

    import lm_eval
    from llm_lit.evals.harness import LlmLitLM
    from llm_lit.run.init_from import load_pretrained

    model, tokenizer = load_pretrained("runs/shakespeare/version_0/checkpoints/last.ckpt")
    results = lm_eval.simple_evaluate(model=LlmLitLM(model, tokenizer), tasks=["hellaswag"])

Every architecture llm_lit builds is evaluated as it is (no export): ALiBi, QK-norm, soft-capped
logits, char tokenizers. Requests become token ids by the harness's conventions
(`llm_lit.evals.requests`); log-likelihoods come from `llm_lit.evals.scoring` (shared contexts
encoded once, equal-length batches); `generate_until` decodes greedily with the KV cache
(`llm_lit.generation.sampling`) and stops at the prompt policy's stop tokens (the EOS role, else
`<|endoftext|>`, as predict) and at the task's stop strings. Needs the `eval` extra
(`pip install 'llm_lit[eval]'`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from lm_eval.api.model import LM
from tqdm import tqdm

from llm_lit.errors import UserError
from llm_lit.evals.requests import RequestEncoder
from llm_lit.evals.scoring import score_requests
from llm_lit.generation.prompts import PromptPolicy
from llm_lit.generation.sampling import SamplingConfig, stream
from llm_lit.model.transformer import TransformerLM
from tokenizer import AnyTokenizer

#: Tokens generated per request when the task names no max_gen_toks (the harness's default).
DEFAULT_MAX_GEN_TOKS = 256


class LlmLitLM(LM):
    """An lm-evaluation-harness `LM` over a loaded llm_lit model and its tokenizer.

    Args:
        model: The transformer (kept in eval mode, on its device).
        tokenizer: Its tokenizer (BPE or char).
        batch_size: Rows of one forward pass at most.
        add_bos_token: Start every context with the BOS token (None: when the tokenizer has a BOS role, as
            predict does; never for a tokenizer without one, which is what `--model hf` does).
        stop_tokens: Special tokens that end a generation (None: the EOS role, else <|endoftext|>).
        max_gen_toks: Tokens generated per request when the task does not say.
    """

    def __init__(self, model: TransformerLM, tokenizer: AnyTokenizer, batch_size: int = 32,
                 add_bos_token: Optional[bool] = None, stop_tokens: Optional[Sequence[str]] = None,
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"batch_size must be a positive number of rows (got {batch_size!r}); pass e.g. 32.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_gen_toks = max_gen_toks
        self.policy = PromptPolicy(tokenizer, model.config.context_length, truncate=True,
                                   stop_tokens=list(stop_tokens) if stop_tokens is not None else None,
                                   stop_setting="stop_tokens")
        self.encoder = RequestEncoder.from_policy(self.policy, add_bos_token)
        self.stop_ids = self.policy.stop_ids()

    @property
    def max_length(self) -> int:
        """The model's context, in tokens."""
        return self.model.config.context_length

    @property
    def device(self) -> torch.device:
        return self.model.token_embeddings.weight.device

    @property
    def tokenizer_name(self) -> str:
        return type(self.tokenizer).__name__

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """`(log-likelihood, is greedy)` of each request's continuation given its context."""
        pairs = [self.encoder.pair(*request.args) for request in requests]
        return [(score.logprob, score.greedy) for score in score_requests(self.model, pairs, self.batch_size)]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each request's whole text (its windows' sum), for perplexity."""
        windows, owners = [], []
        for number, request in enumerate(requests):
            for window in self.encoder.rolling(request.args[0]):
                windows.append(window)
                owners.append(number)
        totals = [0.0] * len(requests)
        for owner, score in zip(owners, score_requests(self.model, windows, self.batch_size)):
            totals[owner] += score.logprob
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each request's continuation, greedy unless its gen_kwargs ask for sampling, cut before the first stop
        string (`until`) and ended at a stop token."""
        return [self._generate(context, dict(gen_kwargs or {}))
                for context, gen_kwargs in tqdm([r.args for r in requests], disable=disable_tqdm,
                                                desc="generate_until")]

    def _generate(self, context: str, gen_kwargs: dict[str, Any]) -> str:
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
        sample = bool(gen_kwargs.pop("do_sample", False))
        temperature = float(gen_kwargs.pop("temperature", 0.0)) if sample else 0.0
        sampling = SamplingConfig(max_new_tokens=max_new, temperature=temperature, top_k=gen_kwargs.pop("top_k", None),
                                  top_p=gen_kwargs.pop("top_p", None), seed=gen_kwargs.pop("seed", None))
        ids = self.encoder.prompt(context)
        room = max(self.max_length - max_new, 1)  # the harness keeps the context's last (max_length - max_gen_toks)
        return generate_text(self.model, self.tokenizer, ids[-room:], sampling, self.stop_ids, until)


def generate_text(model: TransformerLM, tokenizer: AnyTokenizer, prompt: list[int], sampling: SamplingConfig,
                  stop_ids: Sequence[int], until: Sequence[str]) -> str:
    """The text generated after `prompt`, ended by a stop id (left out) or cut before the first of `until`."""
    generated: list[int] = []
    text = ""
    for token in stream(model, prompt, sampling, stop_ids):
        generated.append(token)
        text = tokenizer.decode(generated)
        if any(stop in text for stop in until):
            break
    cut = min((text.index(stop) for stop in until if stop in text), default=len(text))
    return text[:cut]
