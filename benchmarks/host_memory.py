"""Training throughput of the default config with freed memory kept for reuse (llm_lit's default on glibc)
against glibc's own malloc thresholds, paired in one run.

    python benchmarks/host_memory.py [--steps 150] [--repeats 3] [--devices 1]

Each run is `llm_lit fit --config configs/shakespeare.yaml --time_budget null --trainer.max_steps STEPS` in a
fresh folder (one shared token cache, built before timing). The reference sets a glibc malloc tunable to its
default value (`GLIBC_TUNABLES=glibc.malloc.tcache_count=7`), which leaves glibc's thresholds as they are and
tells llm_lit that the user chose malloc's settings, so it keeps its hands off. Prints the median of
`perf/tokens_per_s` over each run's logging steps after the first, the minor page faults of the whole command
(its processes together), and the ratios, over alternating rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
from pathlib import Path

from fit_runs import CONFIG, fit
from report import print_medians

GLIBC_DEFAULTS = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}


def run(workdir: Path, args: list[str], environ: dict[str, str]) -> tuple[float, int]:
    """One fit with `environ` added; returns its median tokens/s and the page faults of its processes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    _, scalars = fit(workdir, args, environ=environ)
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    return statistics.median(value for _, value in scalars["perf/tokens_per_s"][1:]), faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="1", help="--trainer.devices (default 1; auto: every core)")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        del os.environ[name]  # both sides start from glibc's defaults
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="llm_lit_host_memory_"))
    common = ["--config", str(CONFIG), "--time_budget", "null", "--trainer.max_steps", str(args.steps),
              "--trainer.val_check_interval", str(args.steps), "--trainer.limit_val_batches", "1",
              "--trainer.callbacks", "[]", "--model.sample_prompts", "[]", "--data.cache_dir", str(workdir / "cache"),
              "--trainer.devices", args.devices]
    fit(workdir / "warm", [*common, "--trainer.max_steps", "2"])  # the token cache, once
    variants = {"freed memory kept (llm_lit)": {}, "glibc's thresholds": GLIBC_DEFAULTS}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    faults: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name in variants if repeat % 2 == 0 else list(variants)[::-1]:
            rate, count = run(workdir / f"{len(rates[name])}_{name.split()[0]}", common, variants[name])
            rates[name].append(rate)
            faults[name].append(count)
            print(f"  {name} #{repeat}: {rate:,.0f} tokens/s, {count:,} page faults", flush=True)
    print(f"\nconfigs/shakespeare.yaml, {args.steps} steps, --trainer.devices {args.devices}, "
          f"{args.repeats} alternating rounds:")
    print_medians(rates, references=["glibc's thresholds"], unit="tokens/s", digits=0)
    print_medians(faults, references=["glibc's thresholds"], unit="page faults", digits=0)


if __name__ == "__main__":
    main()
