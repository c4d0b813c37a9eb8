"""The precision a run gets when its config sets none: bf16-mixed on GPUs that have bfloat16, else fp32.

Chosen once, when the Trainer is built (`llm_lit.commands.lightning_cli`), from the accelerator the run will use:
`auto` (the shakespeare config's default) means a CUDA GPU when one is present, as in Lightning.
Setting `trainer.precision` (in a config or with `--trainer.precision`) always wins.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.accelerators import CUDAAccelerator


def uses_cuda(accelerator: Any) -> bool:
    """Whether a `trainer.accelerator` value (name or instance) runs on CUDA GPUs on this machine."""
    if isinstance(accelerator, CUDAAccelerator):
        return True
    name = str(accelerator).lower() if accelerator is not None else "auto"
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def default_precision(accelerator: Any) -> str:
    """`"bf16-mixed"` when the run uses CUDA GPUs with native bfloat16 (Ampere or newer), else `"32-true"`.

    GPUs that only emulate bfloat16 (V100, T4) get fp32: 16-mixed would need loss scaling and
    risks overflow, so it stays something to ask for.
    """
    if uses_cuda(accelerator) and torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16-mixed"
    return "32-true"
