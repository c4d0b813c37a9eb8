"""Dense peak FLOP/s of known accelerators: the one table MFU is computed against.

Used by the MFU logger (`callbacks.SpeedMonitor`) and by `llm_lit accounting`. A device that
is not listed (any CPU included) has no peak here, and then no MFU is reported: it is
omitted, never guessed.
"""

from __future__ import annotations

from typing import Optional

import torch

#: Peak tensor throughput by device, per kind of matmul: "bf16" (also fp16), "tf32" (float32
#: matmuls on tensor cores) and "32" (plain float32). Matched as a case-insensitive substring of
#: the device name (`torch.cuda.get_device_name`), most specific first.
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bf16": 989e12, "tf32": 494e12, "32": 67e12}),
    ("H100 PCIe", {"bf16": 756e12, "tf32": 378e12, "32": 51e12}),
    ("H100", {"bf16": 989e12, "tf32": 494e12, "32": 67e12}),
    ("A100", {"bf16": 312e12, "tf32": 156e12, "32": 19.5e12}),
    ("L40S", {"bf16": 362e12, "tf32": 183e12, "32": 91.6e12}),
    ("L4", {"bf16": 121e12, "tf32": 60e12, "32": 30.3e12}),
    ("A10G", {"bf16": 70e12, "tf32": 35e12, "32": 31.2e12}),
    ("V100", {"bf16": 125e12, "32": 15.7e12}),  # fp16 only: V100 has no bf16, and no TF32
    ("T4", {"bf16": 65e12, "32": 8.1e12}),  # fp16 only, no TF32
]


def peak_flops(device_name: str, precision: str, tf32: bool = True) -> Optional[float]:
    """Dense peak FLOP/s of the device called `device_name` at a Lightning precision, or None if unlisted.

    16-bit precisions ('bf16-mixed', '16-true', ...) use the bf16/fp16 peak; float32 uses the
    TF32 peak when `tf32` (matmuls on tensor cores, as `torch.set_float32_matmul_precision('high')`
    gives) and the device has one, else the plain float32 peak.
    """
    kind = "bf16" if "16" in precision else ("tf32" if tf32 else "32")
    for key, peaks in PEAK_FLOPS:
        if key.lower() in device_name.lower():
            return peaks.get(kind, peaks["32"])
    return None


def device_peak_flops(device: torch.device, precision: str) -> Optional[float]:
    """`peak_flops` of a torch device: None off CUDA; float32 counts as TF32 unless torch's
    float32 matmul precision is 'highest'."""
    if device.type != "cuda":
        return None
    tf32 = torch.get_float32_matmul_precision() != "highest"
    return peak_flops(torch.cuda.get_device_name(device), precision, tf32=tf32)
