"""`BigramLM`: the first rung of the classic ladder, a lookup table of next-token logits.

Row `i` of `token_embeddings.weight (vocab_size, vocab_size)` holds the logits of the token that
follows token `i`; nothing else is learned and no other token of the context is seen:

    logits[b, t, :] = W[ids[b, t], :]
    loss = mean_t  -log softmax(W[ids[t]])[targets[t]]

Its best loss is the conditional entropy H(next | current) of the training text, the floor every
longer-context model must beat. It has `TransformerLM`'s interface (`forward`, `loss`,
`new_kv_cache`, `num_parameters`, `flops_per_token`, `set_activation_checkpointing`), so `fit`,
validation, sampling and checkpoints work unchanged (`ModelConfig.architecture = 'bigram'`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llm_lit.errors import UserError
from llm_lit.model.config import ModelConfig
from llm_lit.model.functional import cross_entropy
from llm_lit.model.layers import Embedding


class BigramLM(nn.Module):
    """Next-token logits looked up from the current token: `(batch, seq)` ids -> `(batch, seq, vocab_size)` logits.

    The table is named `token_embeddings` (an embedding of width vocab_size), as in `TransformerLM`.
    Only `vocab_size`, `context_length` (how much `generate` feeds back, nothing else) and `init_std`
    of the config are used.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise UserError(f"BigramLM needs a ModelConfig, got {type(config).__name__}; build one with ModelConfig(...).")
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.vocab_size, init_std=config.init_std)

    def forward(self, ids: Tensor, token_positions: Tensor | None = None, kv_cache: None = None) -> Tensor:
        """Logits `(batch, seq, vocab_size)` of the token after each of `ids (batch, seq)` (positions are unused)."""
        return self.token_embeddings(ids)

    def loss(self, ids: Tensor, targets: Tensor, ignore_index: int = -100, chunk_tokens: int | None = None) -> Tensor:
        """Mean next-token cross-entropy (float32) of `targets (batch, seq)` given `ids (batch, seq)`."""
        if targets.shape != ids.shape:
            raise UserError(f"targets have shape {tuple(targets.shape)} but ids have {tuple(ids.shape)}; pass one target per input token.")
        return cross_entropy(self(ids), targets, ignore_index)

    def new_kv_cache(self, batch_size: int, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - TransformerLM's signature
        """None: a bigram keeps no state between tokens (generation then feeds the window back, at no real cost)."""
        return None

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Nothing to recompute: the only activation is the looked-up row."""

    def num_parameters(self, non_embedding: bool = False) -> int:
        """vocab_size**2 (0 with `non_embedding`: the table is the embedding)."""
        return 0 if non_embedding else self.token_embeddings.weight.numel()

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """0 matmul FLOPs: a lookup and a softmax (MFU counts matmuls only)."""
        return 0


@torch.no_grad()
def bigram_entropy(counts: Tensor) -> float:
    """H(next | current) in nats of a bigram count matrix `counts (vocab, vocab)` (row: current token):
    the loss a `BigramLM` trained on those pairs tends to."""
    counts = counts.double()
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    h = -(counts * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum()
    return float(h / counts.sum())
