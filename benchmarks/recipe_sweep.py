"""Val bits per byte at a fixed wall-time budget: the shakespeare recipe, each option switched against it,
and nanoGPT's char-level CPU recipe as the anchor, given the same time.

    python benchmarks/recipe_sweep.py --budget 600 --seeds 1337,1338 --anchor /path/to/nanoGPT
    python benchmarks/recipe_sweep.py --budget 600 --options default,old-default --parallel 1 --threads 2
    python benchmarks/recipe_sweep.py --steps 700 --options default,no-muon     # a fixed step budget instead
    python benchmarks/recipe_sweep.py --budget 600 --options default,alibi --resume # keep finished runs of --out
    python benchmarks/recipe_sweep.py --list                                   # the options

Every run is `llm_lit fit --config configs/shakespeare.yaml --trainer.devices 1 --data.batch_size 16
--time_budget B [option overrides]` (one process, 16 windows a step, as the recipe was tuned) in its own
folder with its own token cache, so the budget includes training the tokenizer and encoding the corpus;
the run stops itself and validates on the whole val split (the last 10% of the corpus, nanoGPT's split).
With a budget, `trainer.max_steps` is lifted so that every run is given the whole budget. With `--steps`,
a config's own `time_budget` is switched off, the run validates once, at its last step, and all runs share
one token cache (`WORKDIR/cache`: the tokenizer is trained once). Runs go `--parallel N` at a time, run k
pinned to core k (`taskset`) with one torch thread (default 2: both cores of a 2-core machine), or one at
a time with `--threads` threads on the whole machine (`--parallel 1 --threads 2`).
The anchor (`--anchor`, see `benchmarks/nanogpt_anchor.py`) runs under the same conditions.

Writes `OUT/results.json` (every run: settings, final val bpb, steps, wall time, the val bpb curve against
seconds since the process started) and `OUT/table.md` (medians over the seeds, and each option's change
against `default`), and prints the table. `benchmarks/plot_recipe.py` draws the curves. With `--resume`, the
runs already in `OUT/results.json` under the same conditions (budget or steps, parallel runs, threads, config)
are kept and only the others are run; the table covers all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from nanogpt_anchor import run_anchor  # noqa: E402

CONFIG = REPO / "configs" / "shakespeare.yaml"
#: Each run is one process with the config's steps of 16 windows, as the recipe was tuned (the config itself
#: runs one process per core, 8 windows each); options that set these override them.
ONE_PROCESS = ["--trainer.devices", "1", "--data.batch_size", "16"]

#: name -> (what it changes, the llm_lit overrides on top of the config). Each is compared with `default`.
OPTIONS: dict[str, tuple[str, list[str]]] = {
    "default": ("configs/shakespeare.yaml as it is", []),
    "old-default": ("the earlier default config: 4L x 128, AdamW lr 3e-3 cosine, no dropout, batch 16 "
                    "(benchmarks/shakespeare_adamw_cosine.yaml)", []),
    "adamw": ("AdamW for every parameter instead of Muon",
              ["--model.optimizer.name", "adamw", "--model.optimizer.lr", "0.003", "--model.optimizer.min_lr", "0.0003"]),
    "cosine": ("cosine schedule instead of wsd", ["--model.optimizer.schedule", "cosine"]),
    "no-dropout": ("dropout 0", ["--model.config.dropout", "0.0"]),
    "no-weight-decay": ("weight decay 0", ["--model.optimizer.weight_decay", "0.0"]),
    "no-ema": ("no EMA of the weights: validation on the training weights", ["--model.ema.enabled", "false",
                                                                            "--model.ema.gamma", "null"]),
    "ema-0.998": ("a fixed EMA decay of 0.998 (about 500 steps) instead of the power average",
                  ["--model.ema.gamma", "null", "--model.ema.decay", "0.998"]),
    "qk-norm": ("QK-norm", ["--model.config.qk_norm", "true"]),
    "alibi": ("ALiBi instead of RoPE", ["--model.config.position", "alibi"]),
    "learned": ("learned absolute positions instead of RoPE", ["--model.config.position", "learned"]),
    "sinusoidal": ("sinusoidal absolute positions instead of RoPE", ["--model.config.position", "sinusoidal"]),
    "nope": ("no position information (causal attention alone)", ["--model.config.position", "none"]),
    "relu2": ("ReLU^2 MLP instead of SwiGLU", ["--model.config.ffn", "relu2"]),
    "zero-init": ("zero-init of the residual projections", ["--model.config.zero_init_residual", "true"]),
    "softcap": ("logit soft-cap 30", ["--model.config.logit_softcap", "30"]),
    "tied": ("tied embedding and head", ["--model.config.tie_embeddings", "true"]),
    "batch-32": ("batch 32 windows", ["--data.batch_size", "32"]),
    "vocab-512": ("512-token BPE", ["--data.vocab_size", "512"]),
    "vocab-1024": ("1024-token BPE", ["--data.vocab_size", "1024"]),
    "vocab-4096": ("4096-token BPE", ["--data.vocab_size", "4096"]),
    "ctx-256": ("windows of 256 tokens instead of 128", ["--model.config.context_length", "256"]),
    "muon-lr-0.03": ("Muon's learning rate 0.03 instead of 0.02", ["--model.optimizer.muon.lr", "0.03"]),
    "dropout-0.05": ("dropout 0.05 instead of 0.1", ["--model.config.dropout", "0.05"]),
}
#: Options run from their own YAML instead of configs/shakespeare.yaml plus overrides.
OPTION_CONFIGS: dict[str, Path] = {"old-default": REPO / "benchmarks" / "shakespeare_adamw_cosine.yaml"}
#: With a time budget every run gets the whole budget: trainer.max_steps is lifted to this (a config's own
#: cap, e.g. the old default's 700 steps, would otherwise end it early).
UNCAPPED_STEPS = 1_000_000
ANCHOR = "nanoGPT"


# ---------------------------------------------------------------------- one run of ours
def run_ours(name: str, overrides: list[str], seed: int, workdir: Path, budget: Optional[float],
             steps: Optional[int], threads: int, pin: Optional[int], nice: int, config: Path) -> dict[str, Any]:
    """`llm_lit fit` of the config plus `overrides` in its own folder; its final val bpb and curve."""
    run_dir = workdir / f"{name}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if budget is not None:
        length = ["--time_budget", str(budget), "--trainer.max_steps", str(UNCAPPED_STEPS)]
    else:
        length = ["--time_budget", "null", "--trainer.max_steps", str(steps),
                  "--trainer.val_check_interval", str(steps)]
    cache = run_dir / "cache" if budget is not None else workdir / "cache"
    command = [sys.executable, "-m", "llm_lit", "fit", "--config", str(config), "--data.cache_dir", str(cache),
               "--seed_everything", str(seed), "--data.seed", str(seed), "--trainer.enable_progress_bar", "false",
               "--torch_threads", str(threads), *ONE_PROCESS, *length, *overrides]
    if pin is not None:
        command = ["taskset", "-c", str(pin), *command]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads))
    started = time.time()
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.run(command, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    curve = val_curve(run_dir, started)  # lightning_logs/ or runs/<name>/version_N/, wherever fit logged
    return {"name": name, "seed": seed, "overrides": overrides, "returncode": code, "wall_s": wall, "curve": curve,
            "final_bpb": curve[-1]["bpb"] if curve and code == 0 else math.nan,
            "steps": curve[-1]["step"] + 1 if curve else 0, "threads": threads, "pin": pin,
            "command": " ".join(command)}


def val_curve(log_dir: Path, started: float) -> list[dict[str, float]]:
    """Every logged val/bpb with its step and its seconds since the run's process started."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "val/bpb" in acc.Tags().get("scalars", []):
            points += [{"wall_s": e.wall_time - started, "step": e.step, "bpb": e.value} for e in acc.Scalars("val/bpb")]
    return sorted(points, key=lambda p: p["wall_s"])


# ---------------------------------------------------------------------- the queue
def run_all(jobs: list[dict[str, Any]], parallel: int, on_done: Any) -> list[dict[str, Any]]:
    """Run `jobs` (each a dict with a `run(pin)` callable) `parallel` at a time; with 2 or more, slot k is core k."""
    todo: "queue.Queue[dict[str, Any]]" = queue.Queue()
    for job in jobs:
        todo.put(job)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(slot: int) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            result = job["run"](slot if parallel > 1 else None)
            with lock:
                results.append(result)
                on_done(result)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(parallel)]
    for t in threads:
        t.start()
        time.sleep(1.0)  # stagger the start-ups
    for t in threads:
        t.join()
    return results


# ---------------------------------------------------------------------- the table
def table(results: list[dict[str, Any]], seeds: list[int], conditions: str) -> str:
    """Markdown: one row per option (each seed, the median, the change against default) and the anchor."""
    by_name: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_name.setdefault(r["name"], {})[r.get("seed", 0)] = r
    base = _median(by_name.get("default", {}))
    lines = [f"Val bits per byte on tinyshakespeare's last 10% ({conditions}); median over seeds {seeds}.", "",
             "| run | what changes | " + " | ".join(f"seed {s}" for s in seeds)
             + " | median bpb | vs default | steps | wall s |",
             "| --- | --- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: | ---: | ---: |"]
    for name, runs in by_name.items():
        what = OPTIONS[name][0] if name in OPTIONS else "nanoGPT char-level CPU recipe (4L x 128, ctx 64, batch 12)"
        cells = [f"{runs[s]['final_bpb']:.4f}" if s in runs else "" for s in seeds]
        if name == ANCHOR:
            cells = [f"{next(iter(runs.values()))['final_bpb']:.4f}"] + [""] * (len(seeds) - 1)
        median = _median(runs)
        change = f"{median - base:+.4f}" if None not in (base, median) and name != "default" else ""
        median_text = f"**{median:.4f}**" if median is not None else "failed (see its log.txt)"
        steps = statistics.median(r.get("steps", r.get("iters", 0)) for r in runs.values())
        wall = statistics.median(r["wall_s"] for r in runs.values())
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + f" | {median_text} | {change} | {steps:.0f} | "
                     f"{wall:.0f} |")
    return "\n".join(lines)


def _median(runs: dict[int, dict[str, Any]]) -> Optional[float]:
    values = [r["final_bpb"] for r in runs.values() if not math.isnan(r["final_bpb"])]
    return statistics.median(values) if values else None


#: What runs kept by `--resume` must share with the new ones, so that one table compares like with like.
SAME_CONDITIONS = ("budget_s", "steps", "parallel", "threads", "config")


def finished_runs(results_path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of an earlier sweep's results.json that finished (a val bpb) under the conditions of `meta`."""
    if not results_path.exists():
        return []
    earlier = json.loads(results_path.read_text())
    if any(earlier.get("meta", {}).get(key) != meta[key] for key in SAME_CONDITIONS):
        return []
    return [r for r in earlier.get("runs", []) if not math.isnan(r.get("final_bpb", math.nan))]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--budget", type=float, help="wall-time seconds per run (default 600)")
    length.add_argument("--steps", type=int, help="a fixed number of optimizer steps per run instead (no anchor)")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated option names (see --list)")
    p.add_argument("--seeds", default="1337,1338")
    p.add_argument("--anchor", type=Path, help="a nanoGPT checkout: run its char-level CPU recipe for the same time")
    p.add_argument("--anchor-iters", type=int,
                   help="the anchor's iteration count (default: calibrated to the budget by a short run)")
    p.add_argument("--parallel", type=int, default=2,
                   help="N >= 2: N runs at a time, run k pinned to core k (at most the number of cores); "
                        "1: one run at a time, unpinned")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--nice", type=int, default=0, help="run under nice -n N")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--train", type=Path, help="a text file that ours and the anchor train on instead of the config's corpus")
    p.add_argument("--val", type=Path, help="with --train: the validation text of both")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/llm_lit_recipe_sweep"))
    p.add_argument("--out", type=Path, default=Path("recipe_sweep"), help="folder for results.json and table.md")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished runs of OUT/results.json under the same conditions; run only the others")
    p.add_argument("--list", action="store_true", help="print the options and exit")
    args = p.parse_args()
    args.config = args.config.resolve()  # each run's working directory is its own folder
    corpus = [] if args.train is None else ["--data.train_files", f"[{args.train.resolve()}]"] + (
        [] if args.val is None else ["--data.val_files", f"[{args.val.resolve()}]"])
    if args.list:
        for name, (what, overrides) in OPTIONS.items():
            print(f"{name:16s} {what}\n{'':16s} {' '.join(overrides)}")
        return
    budget = args.budget if args.steps is None else None
    if args.steps is None and budget is None:
        budget = 600.0
    if not 1 <= args.parallel <= (os.cpu_count() or 1):
        raise SystemExit(f"--parallel must be between 1 and this machine's {os.cpu_count()} cores "
                         f"(got {args.parallel}).")
    names = [n.strip() for n in args.options.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        raise SystemExit(f"Unknown options {unknown}; see --list.")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    meta = {"budget_s": budget, "steps": args.steps, "parallel": args.parallel, "threads": args.threads,
            "seeds": seeds, "load_before": load_average(), "config": str(args.config)}
    kept = finished_runs(results_path, meta) if args.resume else []
    kept_keys = {(r["name"], r.get("seed", 0)) for r in kept}
    jobs = []
    for seed in seeds:  # seed-major: a partial sweep still has every option once
        for name in names:
            if (name, seed) in kept_keys:
                continue
            jobs.append({"run": lambda pin, name=name, seed=seed: run_ours(
                name, [*corpus, *OPTIONS[name][1]], seed, args.workdir, budget, args.steps, args.threads, pin, args.nice,
                OPTION_CONFIGS.get(name, args.config))})
    if args.anchor is not None and budget is not None and (ANCHOR, 0) not in kept_keys:
        jobs.insert(1, {"run": lambda pin: {**run_anchor(args.anchor, args.workdir / ANCHOR, budget=budget,
                                                          iters=args.anchor_iters, threads=args.threads, pin=pin,
                                                          train=args.train, val=args.val),
                                             "seed": 0}})
    mode = (f"{args.parallel} at a time" + (", each pinned to one core" if args.parallel > 1 else "")
            + f", {args.threads} torch thread(s) each")
    length_text = f"{budget:.0f} s wall-time budget per run" if budget is not None else f"{args.steps} steps per run"
    print(f"{len(jobs)} runs ({len(kept)} kept from {results_path}), {length_text}, {mode}; "
          f"load average before: {meta['load_before']}", flush=True)

    done: list[dict[str, Any]] = list(kept)

    def on_done(result: dict[str, Any]) -> None:
        done.append(result)
        print(f"  {result['name']:14s} seed {result.get('seed', '-')}: val bpb {result['final_bpb']:.4f} "
              f"({result.get('steps', result.get('iters'))} steps, {result['wall_s']:.0f} s; load {load_average()})",
              flush=True)
        results_path.write_text(json.dumps({"meta": meta, "runs": done}, indent=1))  # partial results survive

    results = kept + run_all(jobs, args.parallel, on_done)
    meta["load_after"] = load_average()
    results_path.write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    text = table(results, seeds, f"{length_text}, {mode}; load average {meta['load_before']} before, "
                 f"{meta['load_after']} after")
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
