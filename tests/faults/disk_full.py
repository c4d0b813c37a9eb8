"""A full disk, simulated: every file write fails with ENOSPC past a byte budget (for the fault tests)."""

from __future__ import annotations

import builtins
import errno


def disk_full_after(limit: int, monkeypatch) -> None:
    """Make every file write fail with ENOSPC once `limit` bytes have been written in total (all files together)."""
    real_open = builtins.open
    written = [0]

    class Filling:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            written[0] += len(data)
            if written[0] > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    def filling_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Filling(f) if any(c in mode for c in "wax") else f

    monkeypatch.setattr(builtins, "open", filling_open)
