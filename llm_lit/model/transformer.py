"""Pre-norm `Block` and the decoder-only `TransformerLM`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_lit.errors import UserError
from torch.utils.checkpoint import checkpoint

from llm_lit.model.attention import CausalSelfAttention, KVCache, causal_mask
from llm_lit.model.chunked_loss import auto_chunk_tokens, chunked_linear_cross_entropy
from llm_lit.model.config import ModelConfig
from llm_lit.model.feedforward import GeluMLP, SwiGLU
from llm_lit.model.functional import cross_entropy
from llm_lit.model.layers import Embedding, LayerNorm, Linear, RMSNorm
from llm_lit.model.positional import RotaryEmbedding, SinusoidalPositions, alibi_bias, alibi_slopes


def make_norm(config: ModelConfig) -> nn.Module:
    """The normalization layer the config asks for (fused kernel when `attention='fused'`)."""
    fused = config.attention == "fused"
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, eps=config.norm_eps, fused=fused)
    return LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias, fused=fused)


class Block(nn.Module):
    """Pre-norm transformer block: `x + attn(ln1(x))`, then `x + ffn(ln2(x))`.

    Shapes: `(batch, seq, d_model) -> (batch, seq, d_model)`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        fused = config.attention == "fused"
        # GPT-2's scaled init: each residual projection's std shrinks with depth.
        residual_std = config.init_std / math.sqrt(2 * config.n_layers)
        self.ln1 = make_norm(config)
        self.attn = CausalSelfAttention(
            config.d_model, config.n_heads, config.n_kv_heads, bias=config.bias, dropout=config.dropout,
            fused=fused, init_std=config.init_std, output_init_std=residual_std,
        )
        self.ln2 = make_norm(config)
        ffn_options = dict(bias=config.bias, fused=fused, init_std=config.init_std, output_init_std=residual_std)
        if config.ffn == "swiglu":
            self.ffn = SwiGLU(config.d_model, config.d_ff, **ffn_options)
        else:
            self.ffn = GeluMLP(config.d_model, config.d_ff, approximate=config.gelu_approximate, **ffn_options)
        self.dropout = config.dropout

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, mask: Tensor | None = None,
                is_causal: bool = True, kv_cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """See `CausalSelfAttention.forward` for the attention arguments."""
        attn_out = self.attn(self.ln1(x), rope, mask, is_causal, kv_cache, layer)
        x = x + self._drop(attn_out)
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
        self.config = config
        c = config
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
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=False, init_std=c.init_std)
        if c.tie_embeddings:
            self.lm_head.weight = self.token_embeddings.weight
        #: Recompute each block's activations in the backward pass instead of storing them
        #: (less memory, about one more forward of compute); see `set_activation_checkpointing`.
        self.activation_checkpointing = False
        #: Default `chunk_tokens` of `loss` (None: chunk automatically when the logits are large).
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
        return self.lm_head(self.hidden_states(ids, token_positions, kv_cache, head_follows=True))

    def hidden_states(self, ids: Tensor, token_positions: Tensor | None = None,
                      kv_cache: KVCache | None = None, head_follows: bool = False) -> Tensor:
        """The final-normed hidden states `(batch, seq, d_model)` that `lm_head` turns into logits.

        Arguments as in `forward`. `head_follows=True` promises that the caller applies the output
        layer to the result in the same graph (`forward` and `loss` do); with tied embeddings and
        fused kernels the lookup's gradient is then sparse (see `_sparse_lookup_grad`).
        """
        batch, seq = self._check_ids(ids, kv_cache)
        start = kv_cache.length if kv_cache is not None else 0
        if token_positions is None:
            positions = torch.arange(start, start + seq, device=ids.device)
            max_position = start + seq - 1
        else:
            positions = self._check_positions(token_positions, batch, seq, ids.device)
            max_position = None

        x = self.token_embeddings(ids, sparse_grad=head_follows and self._sparse_lookup_grad())
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

    def _sparse_lookup_grad(self) -> bool:
        """Whether the token lookup may return a sparse gradient for the tied table.

        Tied, the table gets a dense gradient from the output layer and one from the lookup, which
        autograd sums. Dense, the lookup's is a zero-filled table with a few rows added in, and the
        sum a third table-sized tensor (3 x 154 MB at GPT-2 small); sparse, it is only the batch's
        rows, and the sum stays dense. Eager only (compiled graphs fuse this anyway), and only for
        a plain leaf table (sharded wrappers see views of a flat parameter).
        """
        weight = self.token_embeddings.weight
        return (self.config.tie_embeddings and self.config.attention == "fused" and torch.is_grad_enabled()
                and weight.requires_grad and type(weight) is nn.Parameter and not torch.compiler.is_compiling())

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

    def _check_ids(self, ids: Tensor, kv_cache: KVCache | None) -> tuple[int, int]:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
            raise UserError(f"TransformerLM expects integer token ids of shape (batch, seq), got {shape}; pass a 2-D LongTensor.")
        batch, seq = ids.shape
        if seq == 0:
            raise UserError("TransformerLM got an empty sequence; pass at least one token per row.")
        # On accelerators (and while compiling) this check would cost a device sync per step.
        if ids.device.type == "cpu" and not torch.compiler.is_compiling():
            low, high = (int(v) for v in torch.aminmax(ids))
            if low < 0 or high >= self.config.vocab_size:
                raise UserError(
                    f"Token ids must lie in [0, {self.config.vocab_size}) but got values in [{low}, {high}]; "
                    "use a tokenizer whose vocab_size matches the model."
                )
        if kv_cache is None:
            if seq > self.config.context_length:
                raise UserError(
                    f"The sequence has {seq} tokens but context_length is {self.config.context_length}; "
                    "pass at most context_length tokens (generate() slides the window for you)."
                )
        else:
            if kv_cache.batch_size != batch:
                raise UserError(f"The KV cache was made for batch size {kv_cache.batch_size} but ids have {batch} rows; make a new cache with new_kv_cache({batch}).")
            if kv_cache.length + seq > kv_cache.max_seq_len:
                raise UserError(
                    f"The KV cache holds {kv_cache.max_seq_len} tokens and already has {kv_cache.length}, so "
                    f"{seq} more do not fit; reset it or make a larger one with new_kv_cache(max_seq_len=...)."
                )
        return batch, seq

    @staticmethod
    def _check_positions(token_positions: Tensor, batch: int, seq: int, device: torch.device) -> Tensor:
        if not isinstance(token_positions, Tensor) or token_positions.shape not in ((seq,), (batch, seq)) \
                or token_positions.dtype.is_floating_point:
            shape = tuple(token_positions.shape) if isinstance(token_positions, Tensor) else type(token_positions).__name__
            raise UserError(f"token_positions must be an integer tensor of shape ({seq},) or ({batch}, {seq}), got {shape}; match the ids' shape.")
        return token_positions.to(device=device, dtype=torch.long)

    # ------------------------------------------------------------------ helpers
    def loss(self, ids: Tensor, targets: Tensor, ignore_index: int = -100, chunk_tokens: int | None = None) -> Tensor:
        """Mean next-token cross-entropy (float32) of `targets (batch, seq)` given `ids (batch, seq)`.

        `chunk_tokens` > 0 computes `lm_head` and the loss that many tokens at a time, so float32
        logits of the whole batch never exist at once (`chunked_linear_cross_entropy`, equal to the
        plain path); 0 never chunks; None (default) takes `self.loss_chunk_tokens`, and when that
        is None too, chunks only with `attention='fused'` and logits larger than
        `AUTO_CHUNK_MIN_ELEMENTS` (about 256 MiB in float32).
        """
        if targets.shape != ids.shape:
            raise UserError(f"targets have shape {tuple(targets.shape)} but ids have {tuple(ids.shape)}; pass one target per input token.")
        if chunk_tokens is None:
            chunk_tokens = self.loss_chunk_tokens
        if chunk_tokens is None:
            fused = self.config.attention == "fused"
            chunk_tokens = auto_chunk_tokens(ids.numel(), self.config.vocab_size) if fused else 0
        elif isinstance(chunk_tokens, bool) or not (isinstance(chunk_tokens, int) and chunk_tokens >= 0):
            raise UserError(f"chunk_tokens must be a non-negative integer (got {chunk_tokens!r}); pass e.g. 1024, or 0 to disable chunking.")
        hidden = self.hidden_states(ids, head_follows=True)
        if chunk_tokens > 0:
            return chunked_linear_cross_entropy(hidden, self.lm_head.weight, targets, ignore_index, chunk_tokens)
        logits = self.lm_head(hidden)
        if self.config.attention == "fused":
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                   ignore_index=ignore_index)
        return cross_entropy(logits, targets, ignore_index=ignore_index)

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
        """
        c = self.config
        seq_len = seq_len or c.context_length
        n = self.num_parameters(non_embedding=True)
        if c.tie_embeddings:
            n += self.lm_head.weight.numel()
        return 6 * n + 12 * c.n_layers * c.d_model * seq_len
