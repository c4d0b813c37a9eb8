"""A KV cache of independent slots, and the forward pass over some of its slots (continuous batching).

`KVCache` holds one sequence length for its whole batch: every row was started together and
advances together. A server's batch is not like that: requests join and leave between decode
steps, each at its own position. `SlotKVCache` gives each of its `num_slots` rows its own length,
and `forward_slots` runs `TransformerLM`'s layers over any subset of the slots, each row writing
its new keys and values after its own filled ones and attending only over them:

    cache = SlotKVCache.for_model(model, num_slots=8)
    logits = forward_slots(model, prompt_ids, cache, rows=[3])            # a request joins in slot 3
    logits = forward_slots(model, next_ids, cache, rows=[0, 3, 5])        # one decode step, 3 rows

A row's query at slot index `i` sees keys `0..i` of its own slot, so a row computes what it
computes alone (the padding of shorter rows is masked to -inf, which softmax turns into exact
zeros). Token positions equal slot indices, as in `TransformerLM.forward` with a `KVCache`.
`forward_slots` is `TransformerLM.hidden_states` with per-row starts in place of one `length`;
tests/model/test_slot_cache.py holds it equal to the reference for every position scheme.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.model.positional import alibi_bias
from llm_lit.model.transformer import TransformerLM


class SlotKVCache:
    """Preallocated keys and values for `num_slots` sequences of up to `max_seq_len` tokens each.

    Each layer's `keys[i]`/`values[i]` is `(num_slots, n_kv_heads, max_seq_len, d_head)`;
    `lengths[s]` counts the filled positions of slot `s` (kept on the host, so scheduling never
    waits for the device). `clear(s)` empties a slot for its next sequence without freeing memory.
    """

    def __init__(self, n_layers: int, num_slots: int, n_kv_heads: int, max_seq_len: int, d_head: int,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        shape = (num_slots, n_kv_heads, max_seq_len, d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.num_slots = num_slots
        self.max_seq_len = max_seq_len
        self.lengths = [0] * num_slots

    @classmethod
    def for_model(cls, model: TransformerLM, num_slots: int, max_seq_len: int | None = None) -> "SlotKVCache":
        """An empty cache shaped for `model` (its device and dtype), `max_seq_len` defaulting to its context."""
        c = model.config
        max_seq_len = max_seq_len or c.context_length
        if max_seq_len > c.context_length and model.position_embeddings is not None:
            raise UserError(f"Learned positions stop at context_length {c.context_length}; "
                            f"ask for max_seq_len <= {c.context_length}.")
        weight = model.token_embeddings.weight
        return cls(c.n_layers, num_slots, c.n_kv_heads, max_seq_len, c.d_head, weight.device, weight.dtype)

    def clear(self, slot: int, zero: bool = False) -> None:
        """Forget slot `slot`'s tokens; `zero` also overwrites its memory (after non-finite values were written)."""
        self.lengths[slot] = 0
        if zero:
            for keys, values in zip(self.keys, self.values):
                keys[slot].zero_()
                values[slot].zero_()

    def nbytes(self) -> int:
        """Bytes held by the keys and values of every layer."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class SlotStep:
    """One forward pass over `rows` of a `SlotKVCache`, `seq` new tokens each: the object the attention
    layers see as their `kv_cache` (they call `update`).

    `positions (batch, seq)` are the new tokens' positions (each row's start + `arange(seq)`);
    `allowed (batch, 1, seq, k_len)` is True where a new token may see a cached one.
    """

    def __init__(self, cache: SlotKVCache, rows: Sequence[int], seq: int, device: torch.device) -> None:
        self.cache = cache
        self.rows = list(rows)
        self.starts = [cache.lengths[r] for r in self.rows]
        self.k_len = max(self.starts) + seq
        if self.k_len > cache.max_seq_len:
            raise UserError(f"A slot of the KV cache holds {cache.max_seq_len} tokens; {seq} more do not fit after "
                            f"{max(self.starts)}; clear the slot or make a larger cache.")
        self.seq = seq
        starts = torch.tensor(self.starts, device=device, dtype=torch.long)
        self.positions = starts.unsqueeze(-1) + torch.arange(seq, device=device)
        self.allowed = (torch.arange(self.k_len, device=device) <= self.positions.unsqueeze(-1)).unsqueeze(1)
        self._row_index = torch.tensor(self.rows, device=device, dtype=torch.long)
        first = self.rows[0]
        self._contiguous = self.rows == list(range(first, first + len(self.rows)))

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write `k, v (batch, n_kv_heads, seq, d_head)` after each row's filled positions; return each row's
        keys and values so far, padded to the longest: `(batch, n_kv_heads, k_len, d_head)`."""
        keys, values = self.cache.keys[layer], self.cache.values[layer]
        rows = self._row_index.unsqueeze(-1).expand(-1, self.seq)
        keys[rows, :, self.positions] = k.transpose(1, 2).to(keys.dtype)      # (batch, seq, n_kv_heads, d_head)
        values[rows, :, self.positions] = v.transpose(1, 2).to(values.dtype)
        if self._contiguous:
            first = self.rows[0]
            span = slice(first, first + len(self.rows))
            return keys[span, :, :self.k_len], values[span, :, :self.k_len]
        return (keys[:, :, :self.k_len].index_select(0, self._row_index),
                values[:, :, :self.k_len].index_select(0, self._row_index))

    def advance(self) -> None:
        """Count the new tokens as filled (after every layer wrote them)."""
        for row in self.rows:
            self.cache.lengths[row] += self.seq


def forward_slots(model: TransformerLM, ids: Tensor, cache: SlotKVCache, rows: Sequence[int],
                  last_only: bool = False) -> Tensor:
    """Next-token logits of `ids (batch, seq)`, row `b` continuing slot `rows[b]` of `cache`.

    Each row's new tokens are written after its slot's filled positions, at positions
    `lengths[rows[b]] + arange(seq)`; returns logits `(batch, seq, vocab_size)`, or only the last
    position's `(batch, 1, vocab_size)` with `last_only` (a prompt needs no more, and the output
    layer is the costliest matmul of a long prompt). The model is used as it is (call it in eval
    mode, under `torch.inference_mode()`).
    """
    if ids.dim() != 2 or ids.shape[0] != len(rows) or not len(rows):
        raise UserError(f"forward_slots needs ids of shape (len(rows), seq) = ({len(rows)}, seq), got {tuple(ids.shape)}; "
                        "pass one row of ids per slot.")
    if len(set(rows)) != len(rows) or not all(0 <= r < cache.num_slots for r in rows):
        raise UserError(f"forward_slots got rows {list(rows)}; name distinct slots in [0, {cache.num_slots}).")
    step = SlotStep(cache, rows, ids.shape[1], ids.device)
    c = model.config
    x = model.token_embeddings(ids)
    if c.embedding_scale != 1.0:
        x = x * c.embedding_scale
    max_position = step.k_len - 1
    if model.position_embeddings is not None:
        if max_position >= c.context_length:
            raise UserError(f"Token position {max_position} is past the learned position table (context_length "
                            f"{c.context_length}); keep positions below context_length.")
        x = x + model.position_embeddings(step.positions)
    elif model.sinusoidal is not None:
        x = x + model.sinusoidal(step.positions, max_position).to(x.dtype)
    rope = model.rope.cos_sin(step.positions) if model.rope is not None else None
    mask = step.allowed
    if model.alibi_slopes is not None:
        key_positions = torch.arange(step.k_len, device=ids.device).expand(len(rows), -1)
        bias = alibi_bias(model.alibi_slopes, step.positions, key_positions)
        mask = bias.masked_fill(~step.allowed, float("-inf")).to(model.token_embeddings.weight.dtype)
    for i, layer in enumerate(model.layers):
        x = layer(x, rope, mask, False, step, i)
    step.advance()
    if last_only:
        x = x[:, -1:]
    return model.lm_head(model.ln_final(x))
