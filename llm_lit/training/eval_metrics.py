"""Exact evaluation metrics over many batches and ranks: loss, perplexity and bits per byte.

A batch's mean loss is turned back into its summed negative log-likelihood (nats) and added up
with its scored token count and the UTF-8 bytes of those tokens, in float64, on every rank; at the
end the sums are added over ranks (torchmetrics' sync) and

    loss = sum NLL / tokens,   ppl = exp(loss),   bpb = sum NLL / ln 2 / bytes

so the figures are those of the whole split, not a mean of per-batch means, whatever the batch
sizes and the number of ranks. One `EvalMetrics` per thing measured (validation, test, each
source of a validation set).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn
from torchmetrics import SumMetric

from llm_lit.data.datasets import IGNORE_INDEX
from tokenizer import AnyTokenizer


def token_byte_lengths(tokenizer: AnyTokenizer, vocab_size: int) -> Tensor:
    """The UTF-8 length of each token id, `(vocab_size,)` float64 (0 for ids the tokenizer does not have)."""
    lengths = torch.zeros(vocab_size, dtype=torch.float64)
    for token_id, token_bytes in tokenizer.vocab.items():
        lengths[token_id] = len(token_bytes)
    return lengths


class EvalMetrics(nn.Module):
    """Sums of NLL, tokens and bytes over the batches given to `update`; `compute` turns them into metrics.

    A submodule of the LightningModule, so its sums move to the model's device with it; they are not
    saved in checkpoints. Without `token_bytes` (no tokenizer yet) there is no bits per byte.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nll = SumMetric(nan_strategy="disable").set_dtype(torch.float64)  # no NaN check: it would sync
        self.tokens = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.bytes = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.token_bytes: Optional[Tensor] = None  # (vocab_size,) float64, see `token_byte_lengths`

    def update(self, loss: Tensor, targets: Tensor) -> None:
        """Add a batch: `loss` is its mean NLL over the scored targets (`targets != IGNORE_INDEX`), `targets`
        is `(batch, seq)`. A batch with no scored target adds nothing (its mean loss is NaN)."""
        keep = targets != IGNORE_INDEX
        count = keep.sum()
        self.nll.update(torch.where(count > 0, loss.double() * count, torch.zeros((), dtype=torch.float64,
                                                                                  device=loss.device)))
        self.tokens.update(count.double())
        if self.token_bytes is not None:
            if self.token_bytes.device != targets.device:
                self.token_bytes = self.token_bytes.to(targets.device)
            self.bytes.update(self.token_bytes[targets[keep]].sum())

    def compute(self, prefix: str) -> dict[str, Tensor]:
        """`{prefix}/loss`, `/ppl` and (with `token_bytes`) `/bpb` of everything added since the last call, summed
        over ranks (every rank must call it); `{}` when no token was scored. The sums start again from zero."""
        tokens = self.tokens.compute()
        if tokens <= 0:
            return {}
        nll = self.nll.compute()
        loss = nll / tokens
        metrics = {f"{prefix}/loss": loss, f"{prefix}/ppl": torch.exp(loss)}
        if self.token_bytes is not None:
            metrics[f"{prefix}/bpb"] = nll / math.log(2) / self.bytes.compute()
        for metric in (self.nll, self.tokens, self.bytes):
            metric.reset()
        return metrics
