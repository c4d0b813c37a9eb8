"""Honest accounting of a training run: parameters, FLOPs, memory, micro-batch size, MFU.

    llm_lit accounting --preset gpt2-small --memory_gib 80 --device_name H100
    llm_lit accounting --preset shakespeare --tokens_per_s 21000
    llm_lit accounting --model.d_model 512 --model.n_layers 8 --batch_size 32 --precision bf16-mixed

Every figure is computed from the `ModelConfig` (no model is allocated):

* parameters and FLOPs per token from `TransformerLM.num_parameters` and `.flops_per_token`
  (6N plus the attention products), of the model built on the meta device (no memory);
* memory of a training step = weights + gradients + the optimizer's state (float32 under fp32 and
  mixed precision, where Lightning keeps float32 weights: 16 bytes per parameter with AdamW's two
  moments, 12 with SGD's momentum, 8 with plain SGD; Muon keeps one buffer per element of the
  block matrices and AdamW's two moments for the rest) + the
  activations saved for the backward pass + the loss's logits; the activation count follows
  the torch-kernels path tensor by tensor (tests compare it with the bytes autograd saves);
* the largest micro-batch whose estimate fits a given memory;
* MFU: predicted tokens/s at a target MFU on a device from the peak table in
  `llm_lit.training.peak_flops` (the MFU logger's too), and the MFU of a measured tokens/s. A device
  without a listed peak (any CPU) gets "unknown peak", never a guess.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch

from llm_lit.commands.presets import load_preset, preset_model_fields, preset_optimizer_defaults
from llm_lit.errors import UserError, one_line
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.optim import OptimizerConfig, optimizer_state_elements
from llm_lit.optim.muon import muon_matrices, newton_schulz_flops
from llm_lit.training.peak_flops import peak_flops

Precision = Literal["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true"]
GIB = 2**30


# ---------------------------------------------------------------------- parameters and FLOPs
def count_parameters(config: ModelConfig, non_embedding: bool = False) -> int:
    """`TransformerLM.num_parameters` of `TransformerLM(config)`, without allocating weights."""
    return meta_model(config).num_parameters(non_embedding)


def muon_matrix_parameters(config: ModelConfig) -> int:
    """Parameters of the matrices Muon takes (`llm_lit.optim.muon.muon_matrices`), without allocating weights."""
    with torch.device("meta"):
        model = TransformerLM(config)
    return sum(p.numel() for p in muon_matrices(model))


def optimizer_flops_per_step(config: ModelConfig, optimizer: Optional[OptimizerConfig] = None) -> int:
    """Matmul FLOPs of one optimizer step: Muon's Newton–Schulz iterations over its matrices
    (`llm_lit.optim.muon.newton_schulz_flops`); 0 for AdamW and SGD, whose updates are elementwise."""
    optimizer = optimizer or OptimizerConfig()
    if optimizer.name != "muon":
        return 0
    with torch.device("meta"):
        model = TransformerLM(config)
    return sum(newton_schulz_flops(*p.shape, optimizer.muon.ns_steps) for p in muon_matrices(model))


def flops_per_token(config: ModelConfig, seq_len: Optional[int] = None) -> int:
    """Training FLOPs per token (forward + backward), `TransformerLM.flops_per_token`, without allocating weights."""
    return meta_model(config).flops_per_token(seq_len)


def meta_model(config: ModelConfig) -> TransformerLM:
    """`TransformerLM(config)` built on the meta device: every shape and setting, no memory."""
    return _meta_model(json.dumps(config.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _meta_model(config_json: str) -> TransformerLM:
    with torch.device("meta"):
        return TransformerLM(ModelConfig.from_dict(json.loads(config_json)))


# ---------------------------------------------------------------------- memory
def activation_bytes_per_element(precision: str) -> int:
    """Bytes of an activation produced by a matmul: 2 under 16-bit (mixed or true) precision, else 4."""
    return 2 if "16" in precision else 4


def _is_mixed(precision: str) -> bool:
    return precision.endswith("-mixed")


def layer_activation_bytes_per_token(config: ModelConfig, precision: str = "32-true") -> int:
    """Bytes one block saves for its backward pass, per token, on the torch-kernels path.

    The residual stream (the inputs of ln1 and ln2) stays in the weights' dtype (float32
    unless the precision is '-true'); everything a matmul produces is in the compute dtype.
    """
    a = activation_bytes_per_element(precision)
    r = 2 if precision.endswith("-true") and "16" in precision else 4
    c = config
    d, f, kv, heads = c.d_model, c.d_ff, c.n_kv_heads * c.d_head, c.n_heads
    norm_stats = 4 * (2 if c.norm == "layernorm" else 1)  # float32 mean/rstd per token
    saved = 2 * d * r + 2 * norm_stats  # ln1 and ln2 inputs
    saved += 2 * d * a  # ln1 and ln2 outputs (inputs of the projections)
    if _is_mixed(precision):
        saved += 2 * d * 4  # the norms' float32 outputs, besides the 16-bit copies the matmuls keep
    if c.position == "rope":
        saved += (d + kv) * a  # q and k before the rotation
    if c.qk_norm:  # each norm keeps its float32 input and normalised values, and one rstd per head
        saved += 2 * (d + kv) * 4 + (heads + c.n_kv_heads) * 4
    saved += (2 * d + 2 * kv) * a + heads * 4  # attention's q, k, v, output and log-sum-exp
    saved += d * a  # the heads merged back: input of output_proj
    # w1 (and w3) outputs, the activation's own saved values, w2's input
    saved += {"swiglu": 4 * f, "relu2": 3 * f, "gelu": 2 * f}[c.ffn] * a
    if c.dropout > 0:
        saved += 3 * d  # three boolean dropout masks (embedding's is counted per layer for simplicity)
    return saved


def loss_bytes(config: ModelConfig, tokens: int, precision: str = "32-true", chunk_tokens: Optional[int] = None) -> dict[str, int]:
    """Memory of `lm_head` + cross-entropy for `tokens` tokens: `{"saved": ..., "transient": ...}`.

    Plain path: float32 log-probabilities `(tokens, vocab)` are saved, and while the loss is
    computed and differentiated the logits and their gradient exist too. Chunked path
    (`chunked_linear_cross_entropy`, one chunk for small logits): the gradients of the hidden
    states and of the float32 output matrix are saved, and one chunk of float32 logits and one of
    their log-softmax exist at a time. A soft cap adds one float32 `(tokens, vocab)` tensor (tanh's
    output) to the plain path's saved bytes, and one chunk-sized slope to the chunked path's.
    """
    a = activation_bytes_per_element(precision)
    v, d = config.vocab_size, config.d_model
    if chunk_tokens is None:
        chunk_tokens = meta_model(config).lm_head.auto_chunk_tokens(tokens)  # the loss's own choice
    capped = config.logit_softcap is not None
    if chunk_tokens > 0:
        chunk = min(chunk_tokens, tokens)
        return {"saved": tokens * d * 4 + v * d * 4, "transient": chunk * v * (8 + 4 * capped) + v * d * a}
    return {"saved": tokens * v * 4 * (1 + capped), "transient": tokens * v * (a + 4 + 4 * capped)}


@dataclass
class MemoryEstimate:
    """Bytes of one training step of a micro-batch; `total` is the predicted peak."""

    parameters: int
    gradients: int
    optimizer: int
    weight_copies: int
    activations: int
    loss_saved: int
    loss_transient: int
    ema: int = 0

    @property
    def total(self) -> int:
        """Weights + gradients + optimizer state + the EMA + autocast's weight copies + saved activations + the
        loss's peak."""
        return (self.parameters + self.gradients + self.optimizer + self.ema + self.weight_copies + self.activations
                + self.loss_saved + self.loss_transient)


def estimate_memory(config: ModelConfig, batch_size: int, seq_len: Optional[int] = None, precision: str = "32-true",
                    activation_checkpointing: bool = False, chunk_tokens: Optional[int] = None,
                    optimizer: Optional[OptimizerConfig] = None, ema: bool = False) -> MemoryEstimate:
    """Predicted peak memory of a training step with `optimizer` (default AdamW) at `batch_size x seq_len` tokens.

    Weights, gradients and the optimizer's state are float32 (16 bytes per parameter with AdamW;
    weights, gradients and state are 2-byte under '-true' 16-bit precision, since the state is
    allocated like the weights). With activation checkpointing each block keeps only its input,
    and one block's activations exist again while it is recomputed. With `ema` (model.ema) the
    weight average's running sum adds 4 bytes per parameter (float32).
    """
    seq_len = seq_len or config.context_length
    tokens = batch_size * seq_len
    n = count_parameters(config)
    w = 2 if precision.endswith("-true") and "16" in precision else 4
    per_layer = layer_activation_bytes_per_token(config, precision) * tokens
    embedding = tokens * config.d_model * w  # the embedding sum, before layer 0
    final = tokens * config.d_model * (w + activation_bytes_per_element(precision))  # ln_final in, lm_head in
    if _is_mixed(precision):
        final += tokens * config.d_model * 4  # ln_final's float32 output
    # autocast keeps a 16-bit copy of every matmul weight (the output layer's too) through the step
    matmul_params = n - config.vocab_size * config.d_model * (0 if config.tie_embeddings else 1) \
        - (config.context_length * config.d_model if config.position == "learned" else 0)
    copies = matmul_params * 2 if _is_mixed(precision) and "16" in precision else 0
    if activation_checkpointing:
        activations = config.n_layers * tokens * config.d_model * w + per_layer + final
    else:
        activations = config.n_layers * per_layer + embedding + final
    loss = loss_bytes(config, tokens, precision, chunk_tokens)
    optimizer = optimizer or OptimizerConfig()
    matrices = muon_matrix_parameters(config) if optimizer.name == "muon" else 0
    return MemoryEstimate(parameters=n * w, gradients=n * w, optimizer=optimizer_state_elements(optimizer, n, matrices) * w,
                          weight_copies=copies,
                          activations=activations,
                          loss_saved=loss["saved"], loss_transient=loss["transient"], ema=4 * n if ema else 0)


def largest_micro_batch(config: ModelConfig, memory_bytes: float, seq_len: Optional[int] = None,
                        precision: str = "32-true", activation_checkpointing: bool = False,
                        chunk_tokens: Optional[int] = None, optimizer: Optional[OptimizerConfig] = None) -> int:
    """The largest batch size whose `estimate_memory(...).total` fits in `memory_bytes` (0 if none does)."""
    def fits(b: int) -> bool:
        return estimate_memory(config, b, seq_len, precision, activation_checkpointing, chunk_tokens,
                               optimizer).total <= memory_bytes

    if not fits(1):
        return 0
    high = 1
    while fits(high * 2):
        high *= 2
        if high > 2**24:
            return high
    low, high = high, high * 2  # fits(low), not fits(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


# ---------------------------------------------------------------------- MFU
def mfu(flops_per_token: float, tokens_per_s: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the device's peak."""
    return flops_per_token * tokens_per_s / peak


# ---------------------------------------------------------------------- the subcommand
def accounting(
    preset: Optional[str] = None,
    model: Optional[ModelConfig] = None,
    batch_size: int = 16,
    seq_len: Optional[int] = None,
    precision: Precision = "32-true",
    activation_checkpointing: bool = False,
    chunk_tokens: Optional[int] = None,
    memory_gib: Optional[float] = None,
    device_name: Optional[str] = None,
    tokens_per_s: Optional[float] = None,
    target_mfu: float = 0.5,
    optimizer: OptimizerConfig = OptimizerConfig(),
    ema: bool = False,
) -> dict[str, Any]:
    """Print parameters, FLOPs per token, memory of a training step, the largest micro-batch and MFU.

    Args:
        preset: An llm_lit fit YAML (a preset name from configs/ such as gpt2-small, or a path) whose model, batch size and precision are the defaults.
        model: The architecture (overrides the preset's, field by field: --model.d_model 512).
        batch_size: Sequences per micro-batch.
        seq_len: Tokens per sequence (default: the model's context_length).
        precision: Lightning precision of training: 32-true, bf16-mixed, 16-mixed, bf16-true or 16-true.
        activation_checkpointing: Estimate memory with each block recomputed in the backward pass.
        chunk_tokens: Tokens per chunk of the loss (0: plain loss; default: TransformerLM.loss's automatic choice).
        memory_gib: Device memory in GiB: report the largest micro-batch whose estimate fits.
        device_name: Device to predict MFU for (e.g. H100, A100; default: this machine's GPU if any).
        tokens_per_s: A measured training throughput of one device (tokens/s) to turn into MFU.
        target_mfu: MFU at which to predict tokens/s and step time on the device.
        optimizer: The optimizer whose state the memory estimate counts (the preset's model.optimizer by default, else AdamW).
        ema: Count model.ema's weight average (4 bytes per parameter; its update is elementwise: no matmul FLOPs).

    Returns:
        The figures, as a dict (also printed).
    """
    config = model if model is not None else ModelConfig()
    seq_len = seq_len or config.context_length
    problems = []
    if batch_size < 1:
        problems.append(f"batch_size must be >= 1 (got {batch_size})")
    if not 1 <= seq_len <= config.context_length:
        problems.append(f"seq_len must be in [1, {config.context_length}] (got {seq_len})")
    if memory_gib is not None and not memory_gib > 0:
        problems.append(f"memory_gib must be > 0 (got {memory_gib})")
    if tokens_per_s is not None and not tokens_per_s > 0:
        problems.append(f"tokens_per_s must be > 0 (got {tokens_per_s})")
    if not 0 < target_mfu <= 1:
        problems.append(f"target_mfu must be in (0, 1] (got {target_mfu})")
    if chunk_tokens is not None and chunk_tokens < 0:
        problems.append(f"chunk_tokens must be >= 0 (got {chunk_tokens})")
    if problems:
        raise UserError("Invalid accounting arguments: " + "; ".join(problems) + "; fix them and try again.")

    fpt = flops_per_token(config, seq_len)
    memory = estimate_memory(config, batch_size, seq_len, precision, activation_checkpointing, chunk_tokens, optimizer,
                             ema)
    if device_name is None and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
    peak = peak_flops(device_name, precision) if device_name else None
    result: dict[str, Any] = {
        "parameters": count_parameters(config),
        "non_embedding_parameters": count_parameters(config, non_embedding=True),
        "flops_per_token": fpt,
        "optimizer_flops_per_step": optimizer_flops_per_step(config, optimizer),
        "tokens_per_step": batch_size * seq_len,
        "memory": memory,
        "optimizer": optimizer.name,
        "largest_micro_batch": None,
        "device": device_name or "cpu",
        "peak_flops": peak,
        "predicted_tokens_per_s": target_mfu * peak / fpt if peak else None,
        "measured_mfu": mfu(fpt, tokens_per_s, peak) if (peak and tokens_per_s) else None,
    }
    if memory_gib is not None:
        result["largest_micro_batch"] = largest_micro_batch(config, memory_gib * GIB, seq_len, precision,
                                                            activation_checkpointing, chunk_tokens, optimizer)
    print(format_report(config, result, batch_size, seq_len, precision, memory_gib, tokens_per_s, target_mfu))
    return result


def format_report(config: ModelConfig, r: dict[str, Any], batch_size: int, seq_len: int, precision: str,
                  memory_gib: Optional[float], tokens_per_s: Optional[float], target_mfu: float) -> str:
    """The human-readable table `accounting` prints."""
    m: MemoryEstimate = r["memory"]
    c = config
    lines = [
        f"model: {c.n_layers} layers, d_model {c.d_model}, {c.n_heads} heads ({c.n_kv_heads} kv), d_ff {c.d_ff}, "
        f"vocab {c.vocab_size}, {c.norm}/{c.ffn}/{c.position}, tied={c.tie_embeddings}" + _options(c),
        f"parameters:          {r['parameters']:>16,d}  ({r['parameters'] / 1e6:.1f} M)",
        f"FLOPs per token:     {r['flops_per_token']:>16,d}  (train, forward+backward, seq {seq_len})",
        f"FLOPs per step:      {r['flops_per_token'] * r['tokens_per_step']:>16.3e}  (batch {batch_size} x {seq_len})",
        _optimizer_flops_line(r),
        f"memory of a step ({precision}, batch {batch_size} x {seq_len}):",
        f"  weights            {_gib(m.parameters)}",
        f"  gradients          {_gib(m.gradients)}",
        f"  {r.get('optimizer', 'adamw') + ' state':<19}{_gib(m.optimizer)}",
        *([f"  ema average        {_gib(m.ema)}"] if m.ema else []),
        f"  autocast copies    {_gib(m.weight_copies)}",
        f"  activations        {_gib(m.activations)}",
        f"  loss (saved)       {_gib(m.loss_saved)}",
        f"  loss (transient)   {_gib(m.loss_transient)}",
        f"  total (estimate)   {_gib(m.total)}",
    ]
    if memory_gib is not None:
        lines.append(f"largest micro-batch fitting {memory_gib:g} GiB: {r['largest_micro_batch']}")
    peak = r["peak_flops"]
    if peak is None:
        lines.append(f"MFU on {r['device']}: unknown peak (not in llm_lit.training.peak_flops.PEAK_FLOPS); no MFU is predicted or measured")
    else:
        predicted = r["predicted_tokens_per_s"]
        step_s = r["tokens_per_step"] / predicted
        lines.append(f"device {r['device']}: peak {peak / 1e12:.0f} TFLOP/s; at {target_mfu:.0%} MFU (predicted): "
                     f"{predicted:,.0f} tokens/s, {step_s * 1e3:.1f} ms per micro-batch")
        if tokens_per_s is not None:
            lines.append(f"measured {tokens_per_s:,.0f} tokens/s -> MFU {r['measured_mfu']:.1%}")
    return "\n".join(lines)


def _optimizer_flops_line(r: dict[str, Any]) -> str:
    """The optimizer's matmul FLOPs per step, and their share of the step's model FLOPs (MFU leaves them out)."""
    extra = r["optimizer_flops_per_step"]
    if not extra:
        return f"optimizer FLOPs:     {0:>16,d}  ({r['optimizer']}: elementwise updates only)"
    share = extra / (r["flops_per_token"] * r["tokens_per_step"])
    return (f"optimizer FLOPs:     {extra:>16.3e}  per step (Muon's Newton-Schulz: {share:.1%} of the model's; "
            "not model FLOPs, so MFU leaves them out and the logger's perf/hfu counts them)")


def _options(c: ModelConfig) -> str:
    """The model options that are on, e.g. ', qk_norm, logit_softcap=30.0' (empty when none is)."""
    on = [name for name in ("qk_norm", "zero_init_residual") if getattr(c, name)]
    on += [f"{name}={getattr(c, name)}" for name, off in (("embedding_scale", 1.0), ("logit_scale", 1.0),
                                                          ("logit_softcap", None)) if getattr(c, name) != off]
    return "".join(f", {o}" for o in on)


def _gib(n: float) -> str:
    return f"{n / GIB:>12.3f} GiB"


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit accounting ...`: parse `argv` with jsonargparse (from `accounting`'s signature) and print."""
    from llm_lit.commands.parsing import function_parser, parse

    parser = function_parser("llm_lit accounting", accounting)
    args = parse(parser, argv)
    if args.preset:  # the preset supplies defaults; flags given on the command line still win
        _, batch_size, precision = load_preset(args.preset)
        parser.set_defaults({"batch_size": batch_size, "precision": precision,
                             "model": preset_model_fields(args.preset),
                             **preset_optimizer_defaults(args.preset)})
        args = parse(parser, argv)
    try:
        kwargs = parser.instantiate(args).as_dict()
    except Exception as e:  # e.g. a ModelConfigError raised while building --model
        raise _user_error_in(e) from None
    accounting(**kwargs)
    return 0


def _user_error_in(error: BaseException) -> UserError:
    """The `UserError` somewhere in `error`'s chain of causes, else one made from its message."""
    seen: Optional[BaseException] = error
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return UserError(f"{one_line(error).rstrip('.')}; see llm_lit accounting --help.")

