"""The output head: logits from the final hidden states, the training loss, and how the
token table is read when the head shares it.

`LMHead` is the reference: `logits = softcap(logit_scale * h W^T)`, where `softcap(z) =
cap * tanh(z / cap)` when `ModelConfig.logit_softcap` is set and the identity otherwise, and the
loss is the from-scratch `cross_entropy` of those logits. (`logit_scale * h W^T` is computed as
`(logit_scale * h) W^T`: the same product, scaled over d_model features instead of vocab logits.)

`TorchLMHead` computes the same loss with less memory and time, each path tested equal to the
reference:

* `chunked_linear_cross_entropy` computes the output layer and the loss as one function whose
  softmax becomes the logits' gradient in place: in one chunk for small logits, and a chunk of
  tokens at a time for large ones (more than `AUTO_CHUNK_MIN_ELEMENTS` elements), so that float32
  logits of the whole batch never exist (derivation in `chunked_loss.py`);
* with `chunk_tokens=0` (no chunking asked), the cross-entropy is `torch.nn.functional.cross_entropy`;
* with tied embeddings the token lookup gives the shared table a sparse gradient (`sparse_lookup`).

`W` is `weight (vocab_size, d_model)`: the head's own matrix, or, tied, the token embedding
table itself (one Parameter, listed in the state dict under both names).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_lit.errors import UserError
from llm_lit.model.chunked_loss import auto_chunk_tokens, chunked_linear_cross_entropy
from llm_lit.model.functional import cross_entropy, soft_cap
from llm_lit.model.layers import Embedding


class LMHead(nn.Module):
    """Logits and loss of the final hidden states, from-scratch math.

    Shapes: `hidden (..., d_model) -> logits (..., vocab_size)`. With `tied_to` the head's
    `weight` is that embedding's table; otherwise it is drawn from N(0, init_std). The logits are
    `softcap(logit_scale * hidden W^T)`, float32 when capped (tanh near the cap needs the precision).
    """

    def __init__(self, d_model: int, vocab_size: int, init_std: float = 0.02, tied_to: Embedding | None = None,
                 logit_scale: float = 1.0, softcap: float | None = None) -> None:
        super().__init__()
        self.init_std = init_std
        self.logit_scale = logit_scale
        self.softcap = softcap
        #: Whether `weight` is the token embedding's table (initialised by the embedding, not here).
        self.tied = tied_to is not None
        if tied_to is not None:
            self.weight = tied_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """An untied head's weight from N(0, init_std); a tied one is the embedding's to initialise."""
        if not self.tied:
            nn.init.normal_(self.weight, mean=0.0, std=self.init_std)

    def forward(self, hidden: Tensor) -> Tensor:
        logits = self.scaled(hidden) @ self.weight.T
        return logits if self.softcap is None else soft_cap(logits.float(), self.softcap)

    def scaled(self, hidden: Tensor) -> Tensor:
        """`logit_scale * hidden`, the input of the output matmul."""
        return hidden if self.logit_scale == 1.0 else hidden * self.logit_scale

    def extra_repr(self) -> str:
        vocab_size, d_model = self.weight.shape
        return (f"d_model={d_model}, vocab_size={vocab_size}, tied={self.tied}, logit_scale={self.logit_scale}, "
                f"softcap={self.softcap}")

    def loss(self, hidden: Tensor, targets: Tensor, ignore_index: int = -100, chunk_tokens: int | None = None) -> Tensor:
        """Mean cross-entropy (float32) of `targets (...)` under the logits of `hidden (..., d_model)`.

        `chunk_tokens` > 0 computes the logits and the loss that many tokens at a time
        (`chunked_linear_cross_entropy`, equal to the plain path); 0 never chunks; None lets
        the head choose (`auto_chunk_tokens`).
        """
        if chunk_tokens is None:
            chunk_tokens = self.auto_chunk_tokens(targets.numel())
        elif isinstance(chunk_tokens, bool) or not (isinstance(chunk_tokens, int) and chunk_tokens >= 0):
            raise UserError(f"chunk_tokens must be a non-negative integer (got {chunk_tokens!r}); pass e.g. 1024, or 0 to disable chunking.")
        if chunk_tokens > 0:
            return chunked_linear_cross_entropy(self.scaled(hidden), self.weight, targets, ignore_index, chunk_tokens,
                                                softcap=self.softcap)
        return self.cross_entropy(self(hidden), targets, ignore_index)

    def cross_entropy(self, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        """Mean cross-entropy of `targets (...)` under `logits (..., vocab)`, float32."""
        return cross_entropy(logits, targets, ignore_index=ignore_index)

    def auto_chunk_tokens(self, num_tokens: int) -> int:
        """Tokens per chunk of the loss when the caller does not say: the reference never chunks."""
        return 0

    def lookup(self, table: Tensor, ids: Tensor) -> Tensor:
        """The rows `table[ids]`, `(..., d_model)`, read as this head's training graph wants them."""
        return table[ids]


class TorchLMHead(LMHead):
    """`LMHead` with the output layer and loss as one function (chunked for large logits), torch's
    cross-entropy when chunking is turned off and, tied, a sparse gradient for the token lookup."""

    def cross_entropy(self, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=ignore_index)

    def auto_chunk_tokens(self, num_tokens: int) -> int:
        """All the tokens (one chunk) for small logits, else a chunk of about 128 MiB of float32 logits
        (see `chunked_loss.py`)."""
        return auto_chunk_tokens(num_tokens, self.weight.shape[0])

    def lookup(self, table: Tensor, ids: Tensor) -> Tensor:
        """`table[ids]`; when `table` is this head's own weight (tied), with a sparse gradient.

        Tied, the table gets a dense gradient from the output layer and one from the lookup,
        which autograd sums. Dense, the lookup's is a zero-filled table with a few rows added
        in, and the sum a third table-sized tensor (3 x 154 MB at GPT-2 small); sparse, it is
        only the batch's rows, and the sum stays dense. Eager only (compiled graphs fuse this
        anyway), and only for a plain leaf table (sharded wrappers see views of a flat parameter).
        """
        if (table is self.weight and torch.is_grad_enabled() and table.requires_grad
                and type(table) is nn.Parameter and not torch.compiler.is_compiling()):
            return sparse_lookup(table, ids)
        return table[ids]


def sparse_lookup(table: Tensor, ids: Tensor) -> Tensor:
    """`table[ids]` `(..., dim)` whose backward gives `table (rows, dim)` a sparse COO gradient
    holding only the looked-up rows (repeated ids summed), instead of a dense table of zeros
    with those rows added in. Only for a table that also gets a dense gradient in the same
    graph (a tied output layer), so that the sum reaching `.grad` is dense."""
    return _LookupWithSparseGrad.apply(table, ids)


class _LookupWithSparseGrad(torch.autograd.Function):
    """Forward `weight[ids]`; backward the sparse `(rows, dim)` gradient of `weight`."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor) -> Tensor:  # noqa: ANN001 - autograd's ctx
        ctx.save_for_backward(ids)
        ctx.num_rows = weight.shape[0]
        return weight[ids]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN001 - autograd's ctx
        (ids,) = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])
        table_grad = torch.sparse_coo_tensor(ids.reshape(1, -1), rows, (ctx.num_rows, rows.shape[1]),
                                             check_invariants=False)
        return table_grad, None
