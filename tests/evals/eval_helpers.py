"""Shared helpers of the evaluation tests: a small trained model and harness runs on the shipped tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(1)  # a busy shared CPU runs these tiny matrices fastest on one thread

from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.evals.shipped_tasks import TASKS_FOLDER
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer, train_bpe

EOT = "<|endoftext|>"
VOCAB = 400
TINY = dict(vocab_size=VOCAB, context_length=48, d_model=64, n_layers=2, n_heads=4)
MC_TASK, PPL_TASK = "shakespeare_next_line", "shakespeare_ppl"


def bpe_tokenizer(roles: dict[str, str] | None = None) -> Tokenizer:
    """400 ids trained on the bundled corpus, with <|endoftext|> (and the given roles)."""
    vocab, merges = train_bpe(BUNDLED_CORPUS, VOCAB, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    return tok.with_roles(roles) if roles else tok


def trained_model(config: ModelConfig, tokenizer: Any, steps: int = 40, seed: int = 0) -> TransformerLM:
    """`config`'s model after `steps` AdamW steps on random windows of the bundled corpus (so its scores mean
    something: a trained model prefers the true next line)."""
    torch.manual_seed(seed)
    model = TransformerLM(config)
    ids = torch.tensor(tokenizer.encode(BUNDLED_CORPUS.read_text(encoding="utf-8")[:40_000]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    length = config.context_length
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - length - 1, (16,))
        x = torch.stack([ids[s:s + length] for s in starts])
        y = torch.stack([ids[s + 1:s + length + 1] for s in starts])
        loss = model.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def evaluate(lm: Any, tasks: list[str], limit: int | None = None) -> dict[str, Any]:
    """`lm_eval.simple_evaluate` of `lm` on shipped tasks, with every request's response logged."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=TaskManager(include_path=str(TASKS_FOLDER), include_defaults=False),
                                   limit=limit, log_samples=True, bootstrap_iters=0)


def responses(results: dict[str, Any], task: str) -> list[float]:
    """Every log-likelihood the model returned for `task`, in the order of its documents and choices."""
    values = []
    for sample in sorted(results["samples"][task], key=lambda s: s["doc_id"]):
        for response in sample["resps"]:
            value = response[0]
            values.append(float(value[0] if isinstance(value, (tuple, list)) else value))
    return values


def folder_of(path: Path) -> str:
    return str(path)
