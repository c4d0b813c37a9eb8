"""A tiny progress line on stderr (no tqdm dependency).

On a terminal it redraws one line at most ten times a second; in a log file (stderr not
a terminal, e.g. inside a `fit` under SLURM) it writes a new line every `log_interval`
seconds, and always a last one. It costs nothing in library calls that leave
`progress=False`.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress of `total` units of work, drawn on stderr as
    `desc [#####.....]  52%  520.0/1000.0 MB  12.1 MB/s  40 s left`.

    Use as a context manager; call `update(n)` as units complete. `unit_scale` divides
    the amounts for display (e.g. 1e6 with `unit="MB"` for bytes).
    """

    #: Seconds between lines when stderr is not a terminal.
    log_interval = 10.0

    def __init__(self, total: int, desc: str, enabled: bool = True, unit: str = "", unit_scale: float = 1.0):
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.unit = unit
        self.unit_scale = unit_scale
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = self._start
        self._terminal = enabled and sys.stderr.isatty()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Record `n` more units done and redraw when it is time to."""
        self.done += n
        if self.enabled and time.perf_counter() - self._last_draw >= (0.1 if self._terminal else self.log_interval):
            self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(final=True)
            if self._terminal:
                sys.stderr.write("\n")
            sys.stderr.flush()
            self.enabled = False

    def line(self, final: bool = False) -> str:
        """The progress line as it would be drawn now."""
        now = time.perf_counter()
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        scale = self.unit_scale
        amount = f"{self.done / scale:,.1f}/{self.total / scale:,.1f} {self.unit}" if scale != 1 else \
            f"{self.done:,}/{self.total:,} {self.unit}"
        if final:
            when = f"done in {elapsed:.1f} s"
        else:
            when = f"{(self.total - self.done) / rate:.0f} s left" if rate > 0 else "? s left"
        bar = "#" * filled + "." * (width - filled)
        return f"{self.desc} [{bar}] {fraction:4.0%}  {amount}  {rate / scale:,.1f} {self.unit}/s  {when}"

    def _draw(self, final: bool = False) -> None:
        self._last_draw = time.perf_counter()
        if self._terminal:
            sys.stderr.write(f"\r{self.line(final)}\x1b[K")
        else:
            sys.stderr.write(self.line(final) + "\n")
        sys.stderr.flush()
