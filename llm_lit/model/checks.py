"""The checks `TransformerLM` makes of its inputs, and the comparison of a saved architecture or state dict with
a model's: each problem is one sentence naming the fix."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import Tensor

from llm_lit.errors import UserError
from llm_lit.model.attention import KVCache
from llm_lit.model.config import ModelConfig


def check_ids(ids: Tensor, config: ModelConfig, kv_cache: KVCache | None) -> tuple[int, int]:
    """`(batch, seq)` of token ids `(batch, seq)` that fit the model (and the KV cache, if any), else `UserError`."""
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise UserError(f"TransformerLM expects integer token ids of shape (batch, seq), got {shape}; pass a 2-D LongTensor.")
    batch, seq = ids.shape
    if seq == 0:
        raise UserError("TransformerLM got an empty sequence; pass at least one token per row.")
    # On accelerators (and while compiling) this check would cost a device sync per step.
    if ids.device.type == "cpu" and not torch.compiler.is_compiling():
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= config.vocab_size:
            raise UserError(
                f"Token ids must lie in [0, {config.vocab_size}) but got values in [{low}, {high}]; "
                "use a tokenizer whose vocab_size matches the model."
            )
    if kv_cache is None:
        if seq > config.context_length:
            raise UserError(
                f"The sequence has {seq} tokens but context_length is {config.context_length}; "
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


def check_positions(token_positions: Tensor, batch: int, seq: int, device: torch.device) -> Tensor:
    """Explicit positions `(seq,)` or `(batch, seq)` as a long tensor on `device`, else `UserError`."""
    if not isinstance(token_positions, Tensor) or token_positions.shape not in ((seq,), (batch, seq)) \
            or token_positions.dtype.is_floating_point:
        shape = tuple(token_positions.shape) if isinstance(token_positions, Tensor) else type(token_positions).__name__
        raise UserError(f"token_positions must be an integer tensor of shape ({seq},) or ({batch}, {seq}), got {shape}; match the ids' shape.")
    return token_positions.to(device=device, dtype=torch.long)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`"name: saved -> current"` for each architecture field that differs (runtime-only fields ignored).

    A field the saved config lacks (it predates the field) counts as that field's default, which is
    what the model it came from computed.
    """
    runtime_only = {"kernels", "attention", "dropout", "attention_dropout"}  # kernels (formerly `attention`) and dropout leave the weights alone
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    names = sorted((set(saved) | set(current)) - runtime_only)
    return [f"{n} {saved.get(n)!r} in the checkpoint vs {current.get(n)!r}" for n in names
            if saved.get(n) != current.get(n)]


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The first difference in names or shapes between two state dicts, or None when they match."""
    missing = [k for k in expected if k not in saved]
    if missing:
        return f"it lacks '{missing[0]}'" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    extra = [k for k in saved if k not in expected]
    if extra:
        return f"it has an unexpected '{extra[0]}'" + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
    for name, tensor in expected.items():
        if tuple(saved[name].shape) != tuple(tensor.shape):
            return f"'{name}' is {tuple(saved[name].shape)} in the checkpoint but {tuple(tensor.shape)} in the model"
    return None


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> Optional[str]:
    """The name of the first floating-point tensor holding NaN or infinity, or None.

    A tensor's sum is finite when all of its elements are (NaN and infinity propagate), so one
    reduction per tensor settles almost every case; only a non-finite sum, which huge finite
    values can also give, is confirmed element by element.
    """
    for name, tensor in named:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())):
            if not bool(torch.isfinite(tensor).all()):
                return name
    return None
