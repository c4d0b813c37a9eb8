"""Keep the memory a training step frees for the next step instead of handing it back to the OS (glibc).

Every step frees and allocates the same tensors again: activations, logits, gradients, MiBs each.
glibc's malloc serves a block above its mmap threshold (128 KiB, rising to at most 32 MiB as large
blocks are freed) with fresh pages from `mmap` and unmaps them on `free`, and it returns the heap's
free top to the OS above its trim threshold. So each step faults its working set back in, one 4 KiB
page at a time, every page zeroed by the kernel: several percent of a step on a CPU (the default
config, in one process, trains 1.07x faster with freed memory kept: `benchmarks/host_memory.py`).

`keep_freed_memory()` raises both thresholds, so freed blocks stay in the heap and are reused: the
process holds its peak memory (which a training run holds anyway) and most page faults stop. It also
exports them as glibc's environment variables, so the data-parallel processes Lightning starts, and
their data-loading workers, have them from their first allocation.

The command line applies it to fit, validate, test and predict before torch is loaded; a library user
can call it too. It does nothing where the C library is not glibc (macOS, Windows, musl), and nothing
when the user has set glibc's malloc settings themselves (`MALLOC_*_` or `GLIBC_TUNABLES`).
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Mapping

#: Blocks up to this size come from the heap and are reused after `free` (above it: `mmap`, as before).
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the heap's top is returned to the OS only above this much.
TRIM_THRESHOLD_BYTES = 1 << 30

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
                "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES)}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse, in this process and the ones it starts.

    Returns True when the settings were applied; False when the C library is not glibc or the user
    has chosen malloc settings of their own (left as they are).
    """
    if platform.system() != "Linux" or user_chose_malloc_settings(os.environ):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False  # e.g. musl
    applied = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
               and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if applied:
        os.environ.update(_ENVIRONMENT)
    return applied


def user_chose_malloc_settings(environ: Mapping[str, str]) -> bool:
    """Whether the environment already sets glibc's malloc (its `MALLOC_*_` variables or a malloc tunable)."""
    return (any(name.startswith("MALLOC_") and name.endswith("_") and len(name) > len("MALLOC_") for name in environ)
            or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""))
