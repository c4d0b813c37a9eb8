"""The precision a run gets when none is set: bf16-mixed on a CUDA GPU with native bfloat16, else fp32."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

from llm_lit.training.precision import default_precision


@pytest.fixture()
def gpu(monkeypatch):
    """Pretend this machine has a CUDA GPU; `gpu(bf16=...)` says whether it has native bfloat16."""
    def pretend(bf16: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: bf16 or including_emulation)
    return pretend


@pytest.mark.parametrize("accelerator", ["auto", None, "gpu", "cuda", CUDAAccelerator()])
def test_bf16_mixed_on_a_gpu_with_bfloat16(gpu, accelerator):
    gpu(bf16=True)
    assert default_precision(accelerator) == "bf16-mixed"


@pytest.mark.parametrize("accelerator", ["cpu", CPUAccelerator()])
def test_fp32_on_the_cpu_even_where_a_gpu_exists(gpu, accelerator):
    gpu(bf16=True)
    assert default_precision(accelerator) == "32-true"


def test_fp32_on_a_gpu_that_only_emulates_bfloat16(gpu):
    gpu(bf16=False)  # V100, T4: torch emulates bf16 there, slowly
    assert default_precision("auto") == "32-true"


def test_fp32_where_there_is_no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision("auto") == "32-true"
