"""`MultipleChoiceEval`: a multiple-choice task scored at each validation of a run.

    trainer:
      callbacks+:
        - class_path: llm_lit.evals.MultipleChoiceEval
          init_args: {name: hellaswag, path: hellaswag_val.jsonl, limit: 1000}

The items are a JSONL file in HellaSwag's format (`llm_lit.evals.items`) or, without `path`, a
next-line task built from the run's own validation split (`llm_lit.evals.next_line`). Each
item's endings are scored as lm-evaluation-harness scores a multiple-choice task (context, then
the delimiter and the ending; `llm_lit.evals.requests`): `acc` counts the items whose true
ending has the highest log-likelihood, `acc_norm` those whose true ending has the highest
log-likelihood per character. Both are logged as `eval/<name>/acc` and `eval/<name>/acc_norm`
to every logger, printed on the console, and shown in the summary at the end of fit.

With several processes, rank r scores items r, r + world, ... and the counts are summed, so the
accuracies equal those of one process. The items depend on the data and the settings only, so a
resumed run scores the same items and its series continues exactly.
"""

from __future__ import annotations

import time
from typing import Any, Optional

import lightning as L
import torch

from llm_lit.errors import UserError
from llm_lit.evals.items import MultipleChoiceItem, read_items
from llm_lit.evals.next_line import DELIMITER as NEXT_LINE_DELIMITER
from llm_lit.evals.next_line import NextLineTask, next_line_items, validation_texts
from llm_lit.evals.requests import RequestEncoder
from llm_lit.evals.scoring import score_requests
from llm_lit.generation.prompts import PromptPolicy

#: What joins a context and an ending in HellaSwag (and the harness's multiple-choice tasks).
HELLASWAG_DELIMITER = " "


def count_correct(items: list[MultipleChoiceItem], logprobs: list[float]) -> tuple[int, int]:
    """`(acc count, acc_norm count)` of `items`, given the log-likelihood of each ending in order (item by item).

    acc: the true ending has the highest log-likelihood; acc_norm: the highest log-likelihood divided by its
    length in characters (the ending's own, without the delimiter), as the harness defines them (ties go to the first ending)."""
    correct = correct_norm = 0
    position = 0
    for item in items:
        scores = logprobs[position:position + len(item.endings)]
        position += len(item.endings)
        normed = [s / len(e) for s, e in zip(scores, item.endings)]
        correct += int(max(range(len(scores)), key=lambda i: (scores[i], -i)) == item.label)
        correct_norm += int(max(range(len(normed)), key=lambda i: (normed[i], -i)) == item.label)
    return correct, correct_norm


class MultipleChoiceEval(L.Callback):
    """Scores multiple-choice items at each validation; logs `eval/<name>/acc` and `eval/<name>/acc_norm`.

    Args:
        name: The name in the logged keys (`eval/<name>/acc`).
        path: A JSONL file in HellaSwag's format (`ctx`, `endings`, `label`); None builds a next-line task from
            the run's validation split.
        limit: Items scored at most (the first ones of the file; the number built); None: every item of the file.
        delimiter: What joins a context and an ending (default: a space, as HellaSwag and the next-line task).
        batch_size: Rows of one forward pass at most.
        seed: Seed of the next-line task (its places and distractors).
    """

    def __init__(self, name: str = "next_line", path: Optional[str] = None, limit: Optional[int] = 300,
                 delimiter: Optional[str] = None, batch_size: int = 32, seed: int = 0) -> None:
        if not name or "/" in name:
            raise UserError(f"MultipleChoiceEval name {name!r} cannot name a metric; pass a name without '/'.")
        if limit is not None and (not isinstance(limit, int) or limit <= 0):
            raise UserError(f"MultipleChoiceEval limit must be a positive number of items (got {limit!r}); pass e.g. "
                            "500, or null for every item of the file.")
        if limit is None and path is None:
            raise UserError("MultipleChoiceEval needs a limit to build a next-line task (no path given); pass e.g. "
                            "limit: 500.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"MultipleChoiceEval batch_size must be a positive number of rows (got {batch_size!r}).")
        self.name = name
        self.path = path
        self.limit = limit
        self.delimiter = delimiter if delimiter is not None else (
            HELLASWAG_DELIMITER if path is not None else NEXT_LINE_DELIMITER)  # both a space
        self.batch_size = batch_size
        self.seed = seed
        self.items: Optional[list[MultipleChoiceItem]] = None
        self._requests: Optional[list[tuple[list[int], list[int]]]] = None
        #: (step, acc, acc_norm) of each evaluation of this process.
        self.history: list[tuple[int, float, float]] = []

    # ------------------------------------------------------------------ items
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Read (or build) the items once, before any training time is spent: a bad file stops the run now."""
        if stage in ("fit", "validate") and self.items is None:
            self.items = self.load_items(getattr(trainer, "datamodule", None))

    def load_items(self, datamodule: Any) -> list[MultipleChoiceItem]:
        """The file's items, or a next-line task built from `datamodule`'s validation split."""
        if self.path is not None:
            return read_items(self.path, self.limit, what=f"MultipleChoiceEval '{self.name}' file")
        if datamodule is None or not hasattr(datamodule, "train_files"):
            raise UserError(f"MultipleChoiceEval '{self.name}' has no path and no text DataModule to build a task "
                            "from; pass path: a HellaSwag-format JSONL file.")
        texts = validation_texts(datamodule.train_files, datamodule.val_files, datamodule.val_fraction,
                                 datamodule.special_tokens)
        return next_line_items(texts, NextLineTask(items=self.limit, seed=self.seed))

    def shard(self, rank: int, world_size: int) -> list[MultipleChoiceItem]:
        """The items rank `rank` of `world_size` scores: every world_size-th from its rank on."""
        return (self.items or [])[rank::world_size]

    def encode(self, items: list[MultipleChoiceItem], tokenizer: Any, context_length: int) -> list[tuple[list[int], list[int]]]:
        """The token request of every ending of `items`, in order."""
        encoder = RequestEncoder.from_policy(PromptPolicy(tokenizer, context_length, truncate=True))
        return [encoder.pair(item.context, self.delimiter + ending) for item in items for ending in item.endings]

    # ------------------------------------------------------------------ scoring
    def score(self, model: torch.nn.Module, tokenizer: Any, rank: int = 0, world_size: int = 1) -> tuple[int, int, int]:
        """`(acc count, acc_norm count, items)` of this rank's share of the items."""
        items = self.shard(rank, world_size)
        if not items:
            return 0, 0, 0
        if self._requests is None:
            self._requests = self.encode(items, tokenizer, model.config.context_length)
        logprobs = [s.logprob for s in score_requests(model, self._requests, self.batch_size)]
        correct, correct_norm = count_correct(items, logprobs)
        return correct, correct_norm, len(items)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.items is None or getattr(pl_module, "tokenizer", None) is None:
            return
        started = time.perf_counter()
        counts = self.score(pl_module.model, pl_module.tokenizer, trainer.global_rank, trainer.world_size)
        totals = torch.tensor(counts, dtype=torch.float64, device=pl_module.device)
        if trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals, reduce_op="sum")
        correct, correct_norm, n = totals.tolist()
        if n == 0:
            return
        acc, acc_norm = correct / n, correct_norm / n
        prefix = f"eval/{self.name}"
        pl_module.log(f"{prefix}/acc", acc, sync_dist=False)
        pl_module.log(f"{prefix}/acc_norm", acc_norm, sync_dist=False)
        self.history.append((trainer.global_step, acc, acc_norm))
        if trainer.is_global_zero:
            seconds = time.perf_counter() - started
            pl_module.print(f"{prefix} at step {trainer.global_step}: acc {acc:.4f}, acc_norm {acc_norm:.4f} "
                            f"({int(n)} items, chance {self.chance():.2f}; {seconds:.1f} s)")

    def chance(self) -> float:
        """The accuracy of guessing: the mean of 1 / endings over the items."""
        items = self.items or []
        return sum(1 / len(item.endings) for item in items) / max(len(items), 1)
