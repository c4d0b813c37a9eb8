"""`EvaluationHooks`: how a `LanguageModel` scores validation and test batches and logs the result.

The sums are exact (`eval_metrics.EvalMetrics`: NLL, tokens and bytes, summed over all ranks), so
val/loss, val/ppl and val/bpb do not depend on the batch size or the number of processes. With
several `data.sources`, each source's validation loader also has its own sums (`val/<name>/...`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from llm_lit.data.datasets import IGNORE_INDEX
from llm_lit.training.callbacks import logged_epoch
from llm_lit.training.eval_metrics import EvalMetrics


class EvaluationHooks:
    """Mixed into `LanguageModel`: uses its `model`, `eval_metrics`, `source_metrics`, `source_names`,
    `nonfinite_guard`, `trainer` and `log_validation_samples`."""

    def track_sources(self, names: list[str]) -> None:
        """With several sources (`names`, in the order of the validation loaders), keep one set of sums per source."""
        if len(names) > 1 and names != self.source_names:
            self.source_names = names
            self.source_metrics = nn.ModuleList(EvalMetrics() for _ in names)
            self.set_token_bytes(self.eval_metrics.token_bytes)

    def set_token_bytes(self, token_bytes: Optional[torch.Tensor]) -> None:
        """The UTF-8 length of each token id `(vocab_size,)`, from which every set of sums counts bytes."""
        for metrics in [self.eval_metrics, *self.source_metrics]:
            metrics.token_bytes = token_bytes

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int,
                        dataloader_idx: int = 0) -> None:
        """Add an evaluation batch `(x, y)`, each `(batch, seq)`, to the exact NLL, token and byte sums: the
        overall ones and, with several sources, those of source `dataloader_idx`."""
        loss = self.model.loss(*batch, ignore_index=IGNORE_INDEX)
        self.eval_metrics.update(loss, batch[1])
        if len(self.source_metrics):
            self.source_metrics[dataloader_idx].update(loss, batch[1])

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Add a test batch `(x, y)` to the exact sums."""
        self.eval_metrics.update(self.model.loss(*batch, ignore_index=IGNORE_INDEX), batch[1])

    def on_validation_epoch_end(self) -> None:
        """Log val/loss, val/ppl, val/bpb (summed over all ranks; over every source's tokens) and each source's
        val/<name>/loss, /ppl, /bpb, then a few sampled continuations; during fit, a loss that is not finite
        stops the run first (`NonFiniteGuard.check_validation_loss`)."""
        loss = self._log_eval("val")
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.log("epoch", logged_epoch(self.trainer), sync_dist=False)  # else Lightning adds current_epoch
        for name, metrics in zip(self.source_names, self.source_metrics):
            values = metrics.compute(f"val/{name}")
            if values:
                self.log_dict({k: v.float() for k, v in values.items()}, sync_dist=False)
        if self.nonfinite_guard is not None:
            self.nonfinite_guard.check_validation_loss(self.trainer, loss)
        if not self.trainer.sanity_checking and (loss is None or math.isfinite(loss)):
            self.log_validation_samples()

    def on_test_epoch_end(self) -> None:
        """Log test/loss, test/ppl and test/bpb."""
        self._log_eval("test")

    def _log_eval(self, prefix: str) -> Optional[float]:
        """Log `{prefix}/loss`, `/ppl`, `/bpb` of the accumulated batches; returns the loss (None without tokens)."""
        metrics = self.eval_metrics.compute(prefix)
        if not metrics:
            return None
        self.log_dict({k: v.float() for k, v in metrics.items()}, prog_bar=True, sync_dist=False)
        return float(metrics[f"{prefix}/loss"])
