"""Training throughput of the default config on every core (one process per core, llm_lit's default on a
CPU) against one process on one core, paired in one run.

    python benchmarks/cpu_scaling.py [--steps 150] [--repeats 2]

Each run is `llm_lit fit --config configs/shakespeare.yaml --time_budget null --trainer.max_steps STEPS` in a
fresh folder (one shared token cache, built before timing), once with the config's placement (every core) and
once with `--trainer.devices 1`, alternating. The figure is the median of `perf/tokens_per_s` (all processes
together) over each run's logging steps after the first, and the ratio every-core / one-core. The batch per
process is the config's, so every core trains the same tokens per step per process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from fit_runs import CONFIG, fit

from llm_lit.run.placement import Machine  # noqa: E402  (fit_runs puts the repository on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="llm_lit_cpu_scaling_"))
    cache = workdir / "cache"
    common = ["--config", str(CONFIG), "--time_budget", "null", "--trainer.max_steps", str(args.steps),
              "--trainer.val_check_interval", str(args.steps), "--trainer.limit_val_batches", "1",
              "--trainer.callbacks", "[]", "--model.sample_prompts", "[]", "--data.cache_dir", str(cache)]
    fit(workdir / "warm", [*common, "--trainer.max_steps", "2", "--trainer.devices", "1"])  # the cache, once
    variants = {"every core": [], "one core": ["--trainer.devices", "1"]}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for i, (name, extra) in enumerate(variants.items() if repeat % 2 == 0 else reversed(variants.items())):
            _, scalars = fit(workdir / f"{name.replace(' ', '_')}_{repeat}", [*common, *extra])
            run_rates = [value for _, value in scalars["perf/tokens_per_s"][1:]]
            rates[name].append(statistics.median(run_rates))
            print(f"  {name} #{repeat}: {rates[name][-1]:,.0f} tokens/s", flush=True)
    every, one = statistics.median(rates["every core"]), statistics.median(rates["one core"])
    print(f"\nconfigs/shakespeare.yaml, {args.steps} steps, {Machine.this_one().cores} cores, medians of "
          f"{args.repeats} runs each:")
    print(f"  every core (one process per core): {every:,.0f} tokens/s")
    print(f"  one process, one core (reference): {one:,.0f} tokens/s")
    print(f"  ratio: {every / one:.2f}x")


if __name__ == "__main__":
    main()
