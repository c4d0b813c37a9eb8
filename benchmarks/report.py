"""The measuring and reporting loop every benchmark shares.

Variants (ours and the reference tool's) run in interleaved rounds, so each round's runs share
the machine's load; a figure is the median over rounds, and a ratio is the ratio of medians
plus the median of the paired ratios of runs in the same round (steadier on a busy machine).

    rates = interleaved({"ours": run_ours, "reference": run_reference}, repeats=5)
    print_medians(rates, references=["reference"], unit="tokens/s")
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence, TypeVar

T = TypeVar("T")


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of `fn`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(variants: Mapping[str, Callable[[], T]], repeats: int, alternate: bool = False,
                on_result: Optional[Callable[[int, str, T], None]] = None) -> dict[str, list[T]]:
    """Call every variant once per round, for `repeats` rounds; returns each variant's results in round order.

    With `alternate`, odd rounds run the variants in reverse order, so no variant always runs
    first (or right after the same neighbour). `on_result(round, name, result)` sees each result
    as it comes (for progress lines).
    """
    results: dict[str, list[T]] = {name: [] for name in variants}
    for r in range(repeats):
        names = list(variants) if not (alternate and r % 2) else list(variants)[::-1]
        for name in names:
            result = variants[name]()
            results[name].append(result)
            if on_result is not None:
                on_result(r, name, result)
    return results


def medians(values: Mapping[str, Iterable[float]]) -> dict[str, float]:
    """The median of each variant's values."""
    return {name: statistics.median(v) for name, v in values.items()}


def paired_ratio(ours: Sequence[float], reference: Sequence[float]) -> float:
    """The median over rounds of `ours[i] / reference[i]`."""
    return statistics.median(o / r for o, r in zip(ours, reference))


def print_medians(values: Mapping[str, Sequence[float]], references: Sequence[str] = (), unit: str = "",
                  scale: float = 1.0, digits: int = 1, show_runs: bool = False, indent: str = "  ") -> dict[str, float]:
    """Print one line per variant: its median (times `scale`, in `unit`) and, unless it is a reference
    itself, its ratio to each reference: the ratio of medians and the median of paired ratios.
    Returns the (unscaled) medians.

    `show_runs` adds every run's value. A reference missing from `values` (a skipped tool) is left out.
    """
    mid = medians(values)
    width = max(len(name) for name in values)
    present = [ref for ref in references if ref in values]
    for name, median in mid.items():
        line = f"{indent}{name:{width}s} {median * scale:10.{digits}f} {unit}"
        for ref in present if name not in present else ():
            line += f"   / {ref}: {median / mid[ref]:.3f} (paired {paired_ratio(values[name], values[ref]):.3f})"
        if show_runs:
            line += "   runs: " + " ".join(f"{v * scale:.{digits}f}" for v in values[name])
        print(line)
    return mid
