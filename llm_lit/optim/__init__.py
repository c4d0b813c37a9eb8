"""From-scratch optimizer pieces: AdamW, cosine-with-warmup schedule, global-norm clipping."""

from llm_lit.optim.adamw import AdamW, OptimizerConfigError, param_groups
from llm_lit.optim.clip import clip_grad_norm
from llm_lit.optim.schedule import cosine_warmup_scheduler, lr_at

__all__ = ["AdamW", "OptimizerConfigError", "clip_grad_norm", "cosine_warmup_scheduler", "lr_at", "param_groups"]
