"""Pre-norm `Block` and the decoder-only `TransformerLM`.

Which class builds each layer (from-scratch or torch kernels) is decided in `factories.py`;
the output layer and the loss live in `head.py`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from llm_lit.errors import UserError
from llm_lit.model.attention import KVCache, causal_mask
from llm_lit.model.checks import check_ids, check_positions
from llm_lit.model.config import ModelConfig
from llm_lit.model.factories import make_attention, make_ffn, make_head, make_norm
from llm_lit.model.layers import Embedding
from llm_lit.model.positional import RotaryEmbedding, SinusoidalPositions, alibi_bias, alibi_slopes


class Block(nn.Module):
    """Pre-norm transformer block: `x + attn(ln1(x))`, then `x + ffn(ln2(x))`.

    Shapes: `(batch, seq, d_model) -> (batch, seq, d_model)`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = make_norm(config)
        self.attn = make_attention(config)
        self.ln2 = make_norm(config)
        self.ffn = make_ffn(config)
        self.dropout = config.dropout

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, mask: Tensor | None = None,
                is_causal: bool = True, kv_cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """See `CausalSelfAttention.forward` for the attention arguments."""
        x = x + self._drop(self.attn(self.ln1(x), rope, mask, is_causal, kv_cache, layer))
        return x + self._drop(self.ffn(self.ln2(x)))

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=self.dropout, training=True) if self.dropout and self.training else x


class TransformerLM(nn.Module):
    """A GPT-style decoder-only language model, configured by a `ModelConfig`.

    State-dict names follow the field's standard layout: `token_embeddings.weight`,
    `position_embeddings.weight` (learned positions only), `layers.{i}.ln1/attn/ln2/ffn...`,
    `ln_final.weight`, `lm_head.weight` (the same Parameter as the embedding when tied).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise UserError(f"TransformerLM needs a ModelConfig, got {type(config).__name__}; build one with ModelConfig(...).")
        self.config = c = config
        self.token_embeddings = Embedding(c.vocab_size, c.d_model, init_std=c.init_std)
        self.position_embeddings = (
            Embedding(c.context_length, c.d_model, init_std=c.init_std) if c.position == "learned" else None
        )
        self.sinusoidal = SinusoidalPositions(c.context_length, c.d_model) if c.position == "sinusoidal" else None
        self.rope = RotaryEmbedding(c.d_head, c.rope_theta) if c.position == "rope" else None
        if c.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(c.n_heads), persistent=False)
        else:
            self.alibi_slopes = None
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_final = make_norm(c)
        self.lm_head = make_head(c, self.token_embeddings)
        #: Recompute each block's activations in the backward pass instead of storing them
        #: (less memory, about one more forward of compute); see `set_activation_checkpointing`.
        self.activation_checkpointing = False
        #: Default `chunk_tokens` of `loss` (None: the head's automatic choice).
        self.loss_chunk_tokens: int | None = None

    def compile(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - torch.compile's arguments
        """`torch.compile` both `forward` and `loss`, so a training step (forward, lm_head and the
        cross-entropy) is one graph; state-dict names are unchanged."""
        super().compile(*args, **kwargs)
        self.loss = torch.compile(self.loss, *args, **kwargs)

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Store only each block's input during training and recompute the block in backward."""
        self.activation_checkpointing = bool(enabled)

    # ------------------------------------------------------------------ forward
    def forward(self, ids: Tensor, token_positions: Tensor | None = None, kv_cache: KVCache | None = None) -> Tensor:
        """Next-token logits.

        Args:
            ids: token ids `(batch, seq)`.
            token_positions: positions `(seq,)` or `(batch, seq)`; default `start + arange(seq)` where
                `start` is the number of tokens already in `kv_cache` (0 without one).
            kv_cache: from `new_kv_cache`; this call's keys/values are appended to it.

        Returns:
            logits `(batch, seq, vocab_size)`.
        """
        return self.lm_head(self.hidden_states(ids, token_positions, kv_cache, lookup=self.lm_head.lookup))

    def loss(self, ids: Tensor, targets: Tensor, ignore_index: int = -100, chunk_tokens: int | None = None) -> Tensor:
        """Mean next-token cross-entropy (float32) of `targets (batch, seq)` given `ids (batch, seq)`.

        `chunk_tokens` (default `self.loss_chunk_tokens`) is passed to `LMHead.loss`: > 0 computes
        the output layer and the loss that many tokens at a time, 0 never chunks, None lets the
        head decide (torch kernels: the output layer and loss in one function, one chunk up to
        256 MiB of float32 logits, chunks of 128 MiB beyond).
        """
        if targets.shape != ids.shape:
            raise UserError(f"targets have shape {tuple(targets.shape)} but ids have {tuple(ids.shape)}; pass one target per input token.")
        hidden = self.hidden_states(ids, lookup=self.lm_head.lookup)
        chunk_tokens = self.loss_chunk_tokens if chunk_tokens is None else chunk_tokens
        return self.lm_head.loss(hidden, targets, ignore_index, chunk_tokens)

    def hidden_states(self, ids: Tensor, token_positions: Tensor | None = None, kv_cache: KVCache | None = None,
                      lookup: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """The final-normed hidden states `(batch, seq, d_model)` that `lm_head` turns into logits.

        Arguments as in `forward`; `lookup(table, ids)` reads the token embedding table (default
        `table[ids]`). `forward` and `loss` pass `lm_head.lookup`, since a tied head's gradient
        meets the lookup's on the same table.
        """
        batch, seq = check_ids(ids, self.config, kv_cache)
        start = kv_cache.length if kv_cache is not None else 0
        if token_positions is None:
            positions = torch.arange(start, start + seq, device=ids.device)
            max_position = start + seq - 1
        else:
            positions = check_positions(token_positions, batch, seq, ids.device)
            max_position = None

        x = self.token_embeddings(ids) if lookup is None else lookup(self.token_embeddings.weight, ids)
        if self.config.embedding_scale != 1.0:
            x = x * self.config.embedding_scale
        if self.position_embeddings is not None:
            if max_position is None:
                max_position = int(positions.max())
            if max_position >= self.config.context_length:
                raise UserError(
                    f"Token position {max_position} is past the learned position table (context_length "
                    f"{self.config.context_length}); keep positions below context_length."
                )
            x = x + self.position_embeddings(positions)
        elif self.sinusoidal is not None:
            x = x + self.sinusoidal(positions, max_position).to(x.dtype)
        if self.config.dropout and self.training:
            x = F.dropout(x, p=self.config.dropout)

        rope = self.rope.cos_sin(positions) if self.rope is not None else None
        mask, is_causal = self._attention_mask(positions, seq, start, kv_cache, ids.device)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled() and kv_cache is None
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpoint(layer, x, rope, mask, is_causal, None, i, use_reentrant=False)
            else:
                x = layer(x, rope, mask, is_causal, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(seq)
        return self.ln_final(x)

    def _attention_mask(self, positions: Tensor, seq: int, start: int, kv_cache: KVCache | None,
                        device: torch.device) -> tuple[Tensor | None, bool]:
        """The mask every layer shares: `(None, True)` for plain causal attention, else an explicit mask.

        Causality is by slot order (query i sees cached slots 0..start+i); ALiBi adds
        `-slope * (query_pos - key_pos)` with forbidden slots at -inf.
        """
        if kv_cache is None and self.alibi_slopes is None:
            return None, True
        k_len = start + seq
        allowed = causal_mask(seq, k_len, device)
        if self.alibi_slopes is None:
            return (None if seq == 1 else allowed), False
        if kv_cache is not None:
            kv_cache.positions[:, start:k_len] = positions
            key_positions = kv_cache.positions[:, :k_len]
            if positions.dim() == 1:
                key_positions = key_positions[0] if kv_cache.batch_size == 1 else key_positions
        else:
            key_positions = positions
        if key_positions.dim() == 2 and positions.dim() == 1:
            positions = positions.unsqueeze(0).expand(key_positions.shape[0], -1)
        bias = alibi_bias(self.alibi_slopes, positions, key_positions)
        dtype = self.token_embeddings.weight.dtype
        return bias.masked_fill(~allowed, float("-inf")).to(dtype), False

    # ------------------------------------------------------------------ helpers
    def new_kv_cache(self, batch_size: int, max_seq_len: int | None = None, device: torch.device | None = None,
                     dtype: torch.dtype | None = None) -> KVCache:
        """An empty `KVCache` for `batch_size` rows of up to `max_seq_len` tokens (default: context_length).

        Device and dtype default to the model's parameters'.
        """
        c = self.config
        max_seq_len = max_seq_len or c.context_length
        if self.position_embeddings is not None and max_seq_len > c.context_length:
            raise UserError(f"Learned positions stop at context_length {c.context_length}; ask for max_seq_len <= {c.context_length}.")
        weight = self.token_embeddings.weight
        return KVCache(c.n_layers, batch_size, c.n_kv_heads, max_seq_len, c.d_head,
                       device=device or weight.device, dtype=dtype or weight.dtype)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of distinct parameters; `non_embedding=True` leaves out the token and position tables
        (a tied output layer shares the token table, so it is left out with it)."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.token_embeddings.weight.numel()
            if self.position_embeddings is not None:
                total -= self.position_embeddings.weight.numel()
        return total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token: `6 N + 12 L d T` (PaLM / Chinchilla convention).

        `N` counts every non-embedding parameter plus the output layer's matrix (its matmul is
        real work even when tied); `12 L d T` is the attention score and value products
        (`2·2·L·T·d` forward, times 3 for forward + backward) at `T = seq_len` (default context_length).
        Matmul FLOPs only, as MFU counts them: norms, activations, the softmax and these options'
        elementwise work are left out. `ffn='relu2'` has two `d_model x d_ff` matrices per block
        (SwiGLU three), counted in N; `qk_norm` adds no matmul (its two `d_head` weights per block
        are in N, like every norm's); `zero_init_residual` changes initial values only;
        `embedding_scale`, `logit_scale` and `logit_softcap` are elementwise.
        """
        c = self.config
        seq_len = seq_len or c.context_length
        n = self.num_parameters(non_embedding=True)
        if c.tie_embeddings:
            n += self.lm_head.weight.numel()
        return 6 * n + 12 * c.n_layers * c.d_model * seq_len
