"""A tiny progress bar on stderr (no tqdm dependency).

It redraws at most ten times a second and only when enabled, so it costs nothing in
library calls that leave `progress=False`.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress of `total` units of work, drawn as one line on stderr: `desc [#####.....] 52% 12.1 MB/s`.

    Use as a context manager; call `update(n)` as units complete. `unit_scale` divides
    the rate for display (e.g. 1e6 with `unit="MB"` for bytes).
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "", unit_scale: float = 1.0):
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.unit = unit
        self.unit_scale = unit_scale
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Record `n` more units done and redraw if a tenth of a second has passed."""
        self.done += n
        if self.enabled and time.perf_counter() - self._last_draw >= 0.1:
            self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.enabled = False

    def _draw(self) -> None:
        self._last_draw = time.perf_counter()
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        elapsed = max(self._last_draw - self._start, 1e-9)
        rate = self.done / elapsed / self.unit_scale
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.desc} [{bar}] {fraction:4.0%} {rate:,.1f} {self.unit}/s {elapsed:.1f}s")
        sys.stderr.flush()
