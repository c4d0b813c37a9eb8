"""From-scratch optimizer pieces: AdamW, SGD, Muon, the learning-rate schedules (cosine, warmup-stable-decay,
inverse-time), global-norm clipping, and `OptimizerConfig` with `build_optimizer` that turns it into them."""

from llm_lit.optim.adamw import AdamW, OptimizerConfigError, param_groups
from llm_lit.optim.clip import clip_grad_norm
from llm_lit.optim.config import (
                                  InverseTimeSettings,
                                  MuonSettings,
                                  OptimizerConfig,
                                  SGDSettings,
                                  WsdSettings,
                                  build_optimizer,
                                  optimizer_state_elements,
)
from llm_lit.optim.muon import Muon, orthogonalise
from llm_lit.optim.schedule import (
                                  cosine_warmup_scheduler,
                                  inverse_time_lr_at,
                                  lr_at,
                                  peak_relative_scheduler,
                                  wsd_lr_at,
)
from llm_lit.optim.sgd import SGD

__all__ = ["AdamW", "InverseTimeSettings", "Muon", "MuonSettings", "OptimizerConfig", "OptimizerConfigError", "SGD",
           "SGDSettings", "WsdSettings", "build_optimizer", "clip_grad_norm", "cosine_warmup_scheduler",
           "inverse_time_lr_at", "lr_at", "optimizer_state_elements", "orthogonalise", "param_groups",
           "peak_relative_scheduler", "wsd_lr_at"]
