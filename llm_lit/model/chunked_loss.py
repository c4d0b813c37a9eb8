"""Output layer + cross-entropy in one function, computed a chunk of tokens at a time.

The plain loss builds logits `(tokens, vocab)` and upcasts them to float32: at GPT-2 small
(16 x 1024 tokens, 50k vocabulary) that is 3.3 GB before the backward pass even starts.
`chunked_linear_cross_entropy` instead walks over the tokens in chunks; for each chunk it
computes the logits, their log-softmax and, right away, the gradient of the summed loss with
respect to the chunk's hidden states and the output matrix. Only one chunk of logits (and of
their log-softmax) exists at any moment; the backward pass just scales the stored gradients by
the incoming one and by 1 / (number of kept tokens).

It is also faster than the plain loss when the logits fit in one chunk: the log-softmax gives
the loss, and its exponential, taken in place, is the softmax, which a scatter of -1 at the
targets turns into the logits' gradient. The plain path instead fills a zero gradient and runs
a log-softmax backward pass over the whole logits (on a CPU at 2,048 tokens x 8,192 vocabulary,
about 8 ms of a 0.6 s training step).

The math is the plain path's exactly (tests compare values and gradients):
    loss = sum_i keep_i * (logsumexp(z_i) - z_i[t_i]) / sum_i keep_i,   z_i = h_i W^T
    dloss/dz_i = keep_i * (softmax(z_i) - onehot(t_i)) / sum_i keep_i
    dloss/dh_i = dloss/dz_i W,   dloss/dW = sum_i dloss/dz_i^T h_i

With a soft cap `c` (`ModelConfig.logit_softcap`) the logits are capped raw products:
    u_i = h_i W^T,   z_i = c tanh(u_i / c)
and the chain rule through the cap is elementwise, with tanh' = 1 - tanh^2:
    dz_i/du_i = 1 - tanh^2(u_i / c) = 1 - (z_i / c)^2
    dloss/du_i = dloss/dz_i * (1 - (z_i / c)^2)          (dloss/dz_i as above)
    dloss/dh_i = dloss/du_i W,   dloss/dW = sum_i dloss/du_i^T h_i
so each chunk keeps its `1 - (z/c)^2` next to its logits and multiplies it into the softmax
gradient before the two matmuls. (A logit scale `s` is applied by the caller to `h`, so its
gradient, `s` times that of `s h`, comes from autograd.)
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Logits of more elements than this (tokens x vocab) are cut into chunks by default (fewer: one chunk).
AUTO_CHUNK_MIN_ELEMENTS = 2**26
#: Target number of logit elements per chunk when chunking automatically (128 MiB in float32).
AUTO_CHUNK_ELEMENTS = 2**25


def auto_chunk_tokens(num_tokens: int, vocab_size: int) -> int:
    """Tokens per chunk the loss uses by default: all of them (one chunk) for small logits, else a
    multiple of 128 with about `AUTO_CHUNK_ELEMENTS` logits a chunk."""
    if num_tokens * vocab_size <= AUTO_CHUNK_MIN_ELEMENTS:
        return num_tokens
    return max(128, AUTO_CHUNK_ELEMENTS // vocab_size // 128 * 128)


def chunked_linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, ignore_index: int = -100,
                                 chunk_tokens: int = 1024, softcap: float | None = None) -> Tensor:
    """Mean cross-entropy of `targets` under logits `hidden @ weight.T` (capped to
    `softcap * tanh(logits / softcap)` when `softcap` is set), never holding all logits at once.

    Shapes: `hidden (..., d_model)`, `weight (vocab, d_model)`, `targets (...)` -> scalar float32.
    Targets equal to `ignore_index` are skipped; when all are, the result is NaN (as in PyTorch).
    Under autocast the matmuls run in the autocast dtype (like the plain `lm_head`) and the
    cap and the softmax in float32.
    """
    d_model = hidden.shape[-1]
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        compute_dtype = torch.get_autocast_dtype(device_type)
    else:
        compute_dtype = torch.promote_types(hidden.dtype, weight.dtype)
    want_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ChunkedLinearCrossEntropy.apply(hidden.reshape(-1, d_model), weight, targets.reshape(-1),
                                            ignore_index, chunk_tokens, compute_dtype, want_grad, softcap)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and both (unscaled) gradients chunk by chunk; backward scales them."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, ignore_index: int, chunk_tokens: int,
                compute_dtype: torch.dtype, want_grad: bool, softcap: float | None) -> Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            keep = targets != ignore_index
            count = keep.sum()
            w = weight.to(compute_dtype)
            total = torch.zeros((), device=hidden.device, dtype=torch.float32)
            grad_hidden = torch.empty_like(hidden) if want_grad else None
            grad_weight = None
            for start in range(0, hidden.shape[0], chunk_tokens):
                end = min(start + chunk_tokens, hidden.shape[0])
                k = keep[start:end].unsqueeze(-1)  # (chunk, 1)
                h = hidden[start:end].to(compute_dtype)
                safe_targets = torch.where(k, targets[start:end].unsqueeze(-1), 0)  # (chunk, 1)
                log_probs, cap_slope = _log_softmax_of_logits(h, w, softcap, want_grad)  # (chunk, vocab)
                target_log_prob = log_probs.gather(-1, safe_targets)  # (chunk, 1)
                total = total - (target_log_prob * k).sum()
                if want_grad:
                    # d(sum of kept losses)/dz = keep * (softmax - onehot), in the log-probabilities' memory;
                    # the 1 / count of the mean is applied in backward, to these small gradients
                    grad_logits = log_probs.exp_().scatter_add_(-1, safe_targets, torch.full_like(target_log_prob, -1.0))
                    if cap_slope is not None:
                        grad_logits.mul_(cap_slope)  # dloss/du = dloss/dz * (1 - (z/c)^2)
                    g = grad_logits.to(compute_dtype)
                    grad_hidden[start:end] = ((g @ w) * k).to(hidden.dtype)
                    chunk_weight_grad = (g.T @ (h * k)).float()  # ignored tokens' rows of h count as zero
                    grad_weight = chunk_weight_grad if grad_weight is None else grad_weight.add_(chunk_weight_grad)
            ctx.save_for_backward(grad_hidden, grad_weight, count)
            ctx.weight_dtype = weight.dtype
            return total / count

    @staticmethod
    def backward(ctx, grad_loss: Tensor):  # noqa: ANN205 - autograd signature
        grad_hidden, grad_weight, count = ctx.saved_tensors
        if grad_hidden is None:
            raise RuntimeError("chunked_linear_cross_entropy was called without gradients but backward ran.")
        scale = grad_loss / count.clamp(min=1)
        d_hidden = grad_hidden * scale.to(grad_hidden.dtype) if ctx.needs_input_grad[0] else None
        d_weight = (grad_weight * scale).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return d_hidden, d_weight, None, None, None, None, None, None


def _log_softmax_of_logits(h: Tensor, w: Tensor, softcap: float | None,
                           want_slope: bool) -> tuple[Tensor, Tensor | None]:
    """Log-softmax `(chunk, vocab)` of one chunk of logits `h w^T` (capped when `softcap` is set),
    in float32, and with a soft cap and `want_slope` the cap's slope `(chunk, vocab)` (else None).

    `h (chunk, d_model)`, `w (vocab, d_model)`. The logits are freed on return: one chunk of logits
    and one of log-probabilities exist at a time, and only while the log-softmax runs.
    """
    logits = (h @ w.T).float()
    cap_slope = None
    if softcap is not None:
        capped = logits.div_(softcap).tanh_()  # tanh(u / c), in place of u
        cap_slope = 1.0 - capped.square() if want_slope else None  # dz/du = 1 - tanh^2
        logits = capped.mul_(softcap)  # z = c tanh(u / c)
    return torch.log_softmax(logits, dim=-1), cap_slope
