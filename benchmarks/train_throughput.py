"""Training throughput of our `Trainer.fit` vs a plain PyTorch loop of the identical model shape.

For a named config (debug, shakespeare, gpt2-small, llama-small, or an llm_lit fit YAML) and a
precision, each run trains `--warmup + --steps` optimizer steps and times the last `--steps`:

* ours: `lightning.Trainer.fit` of `LanguageModel` (our from-scratch `TransformerLM`, AdamW with
  one compiled pass per parameter, or eager `torch._foreach` ops with `--optimizer-compile off`, cosine schedule, global-norm clipping, TensorBoard logging every 10
  steps, tokens/s + MFU callback), fed by `RandomWindows` over a memory-mapped token array;
* reference: a hand-written loop over `benchmarks/reference_model.py`'s `ReferenceLM` (stock
  `nn.Linear`/`nn.Embedding`/norms, `F.scaled_dot_product_attention`, `F.cross_entropy`) with
  fused `torch.optim.AdamW`, the same schedule and `torch.nn.utils.clip_grad_norm_`, fed by
  nanoGPT-style random windows from the same array.

Every run is its own child process (fresh allocator, clean peak memory), runs are interleaved
(reference, ours, ours, reference, ...), and medians over `--repeats` are printed with the
ratio ours / reference. Peak memory is `torch.cuda.max_memory_allocated` on GPU; on CPU it is
the peak resident set (VmHWM, reset after warmup) minus the resident set just before the model
was built (after the Trainer, for ours); when either loop compiles on a CPU, both children first
compile a one-line function so the compiler's own resident memory is in both baselines. MFU uses `llm_lit.training.peak_flops` (a CPU has no listed peak: "unknown peak").

    python benchmarks/train_throughput.py --config shakespeare --compile both
    python benchmarks/train_throughput.py --config llama-small --batch-size 4 --steps 4 --warmup 2
    python benchmarks/train_throughput.py --config shakespeare --vocab-size 50304   # chunked loss
    python benchmarks/train_throughput.py --config gpt2-small --precision bf16-mixed --compile on \\
        --batch-size 8,16,32 --device cuda                                   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from report import interleaved, medians, paired_ratio  # noqa: E402

LR, MIN_LR, WARMUP_LR_STEPS, CLIP = 3e-4, 3e-5, 2, 1.0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="shakespeare", help="debug, shakespeare, gpt2-small, llama-small or a YAML path")
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed", "16-mixed"])
    p.add_argument("--compile", default="off", choices=["off", "on", "both"], help="torch.compile both loops")
    p.add_argument("--optimizer-compile", default="on", choices=["off", "on"],
                   help="ours: compiled one-pass AdamW update (on) or the eager foreach update (off)")
    p.add_argument("--batch-size", default=None, help="micro-batch size(s), comma-separated (default: the config's)")
    p.add_argument("--context", type=int, default=None, help="sequence length (default: the config's context_length)")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size (default: the config's)")
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each loop (interleaved); medians are printed")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--loss-chunk-tokens", type=int, default=None,
                   help="ours: tokens per chunk of the loss (0 = plain loss; default: automatic)")
    p.add_argument("--activation-checkpointing", action="store_true", help="ours: recompute blocks in backward")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run (default: torch's)")
    p.add_argument("--only", choices=["ours", "reference"], default=None, help="run one loop only")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------------- memory
def memory_in_use(device: str) -> int:
    """Bytes in use now: CUDA allocated memory, or this process's resident set on CPU."""
    if device == "cuda":
        return torch.cuda.memory_allocated()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_memory(device: str) -> None:
    """Forget the peak so far (CUDA allocator stats; Linux VmHWM via /proc/self/clear_refs)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory(device: str) -> int:
    """Peak bytes since the last reset: CUDA allocated memory, or the CPU resident set (VmHWM)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- the two loops (child side)
def run_ours(spec: dict[str, Any], config, tokens: np.ndarray) -> tuple[float, int, int]:
    """Seconds for the timed steps of `Trainer.fit`, the peak memory during them and the memory before the model."""
    import lightning as L
    from torch.utils.data import DataLoader

    from llm_lit.data import RandomWindows
    from llm_lit.training.module import LanguageModel, OptimizerConfig

    device, warmup = spec["device"], spec["warmup"]

    class Windows(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            windows = RandomWindows(tokens, spec["context"], spec["batch_size"], seed=0)
            return DataLoader(windows, batch_size=None, pin_memory=device == "cuda")

    class Timer(L.Callback):
        start = end = 0.0
        peak = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == warmup:
                reset_peak_memory(device)
                synchronize(device)
                self.start = time.perf_counter()

        def on_train_end(self, trainer, pl_module) -> None:
            synchronize(device)
            self.end = time.perf_counter()
            self.peak = peak_memory(device)

    timer = Timer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = L.Trainer(accelerator=device, devices=1, precision=spec["precision"],
                            max_steps=warmup + spec["steps"], limit_val_batches=0, num_sanity_val_steps=0,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            logger=L.pytorch.loggers.TensorBoardLogger(log_dir), log_every_n_steps=10,
                            callbacks=[timer])
        baseline = memory_in_use(device)
        optimizer = OptimizerConfig(lr=LR, min_lr=MIN_LR, warmup_steps=WARMUP_LR_STEPS,
                                    compile=spec["optimizer_compile"])
        module = LanguageModel(config, optimizer,
                               grad_clip=CLIP, compile=spec["compile"], activation_checkpointing=spec["activation_checkpointing"],
                               sample_prompts=[])
        module.model.loss_chunk_tokens = spec["loss_chunk_tokens"]
        trainer.fit(module, datamodule=Windows())
    return timer.end - timer.start, timer.peak, baseline


def run_reference(spec: dict[str, Any], config, tokens: np.ndarray) -> tuple[float, int, int]:
    """Seconds for the timed steps of the plain loop, the peak memory during them and the memory before the model."""
    from reference_model import ReferenceLM, reference_optimizer

    from llm_lit.optim import lr_at

    device, warmup, steps = spec["device"], spec["warmup"], spec["steps"]
    batch, context = spec["batch_size"], spec["context"]
    baseline = memory_in_use(device)
    model = ReferenceLM(config).to(device)
    optimizer = reference_optimizer(model, LR)
    loss_fn = torch.compile(model.loss) if spec["compile"] else model.loss
    precision = spec["precision"]
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device) if precision == "16-mixed" else None
    total_steps = warmup + steps
    start = 0.0
    for step in range(total_steps):
        if step == warmup:
            reset_peak_memory(device)
            synchronize(device)
            start = time.perf_counter()
        starts = torch.randint(len(tokens) - context - 1, (batch,))
        rows = torch.stack([torch.from_numpy(tokens[s:s + context + 1].astype(np.int64)) for s in starts.tolist()])
        if device == "cuda":
            rows = rows.pin_memory().to(device, non_blocking=True)
        x, y = rows[:, :-1], rows[:, 1:]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, LR, MIN_LR, WARMUP_LR_STEPS, total_steps)
        with torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext():
            loss = loss_fn(x, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return time.perf_counter() - start, peak_memory(device), baseline


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed run in this process; returns tokens/s, step time and peak memory."""
    import lightning  # noqa: F401 - both variants pay the same imports, so baselines match

    from llm_lit.model import ModelConfig

    if spec["device"] == "cpu" and (spec["compile"] or spec["optimizer_compile"]):
        warm_up_the_compiler()

    if spec["device"] == "cuda":
        torch.set_float32_matmul_precision("high")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    config = ModelConfig.from_dict(spec["config"])
    rng = np.random.default_rng(0)
    num_tokens = max(1 << 20, 4 * spec["batch_size"] * (spec["context"] + 1))
    dtype = np.uint16 if config.vocab_size <= 65536 else np.uint32
    tokens = rng.integers(0, config.vocab_size, size=num_tokens, dtype=dtype)
    torch.manual_seed(0)
    run = run_ours if spec["variant"] == "ours" else run_reference
    try:
        seconds, peak, baseline = run(spec, config, tokens)
    except torch.OutOfMemoryError:
        return {"oom": True}
    tokens_done = spec["steps"] * spec["batch_size"] * spec["context"]
    return {"tokens_per_s": tokens_done / seconds, "step_s": seconds / spec["steps"], "peak_bytes": peak - baseline}


def warm_up_the_compiler() -> None:
    """Compile a one-line function, so torch.compile's code and caches (about 150 MB of resident set
    on a CPU) are loaded before either loop's memory baseline: they are the compiler's, not the
    training step's, and the reference loop with fused AdamW would otherwise never load them."""
    torch.compile(lambda x: x * 2 + 1, dynamic=True)(torch.ones(3))


# ---------------------------------------------------------------------- parent side
def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `child(spec)` in a fresh Python process and return its result."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
    raise RuntimeError(f"child run {spec['variant']} failed (exit {proc.returncode}):\n{tail}")


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    from llm_lit.commands.accounting import flops_per_token
    from llm_lit.training.peak_flops import device_peak_flops
    from llm_lit.commands.presets import load_preset

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    config, preset_batch, _ = load_preset(args.config)
    context = args.context or config.context_length
    # the reference model has no dropout: ours runs without it too, so both sides do the same work
    overrides = {"context_length": context, "vocab_size": args.vocab_size or config.vocab_size, "dropout": 0.0,
                 "attention_dropout": None}
    config = type(config).from_dict({**config.to_dict(), **overrides})
    batch_sizes = [int(b) for b in args.batch_size.split(",")] if args.batch_size else [preset_batch]
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    variants = [args.only] if args.only else ["reference", "ours"]
    fpt = flops_per_token(config, context)
    peak = device_peak_flops(torch.device(device), args.precision)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {args.threads or torch.get_num_threads()} threads"
    print(f"{args.config}: {config.n_layers}L d{config.d_model} {config.n_heads}H vocab {config.vocab_size} ctx {context} "
          f"({config.norm}/{config.ffn}/{config.position}), {args.precision}, {name}, torch {torch.__version__}, "
          f"our optimizer update {'compiled' if args.optimizer_compile == 'on' else 'eager'}; "
          f"{args.repeats} interleaved repeats x {args.steps} timed steps after {args.warmup} warm-up", flush=True)

    figures: dict[tuple[bool, int, str], dict[str, float]] = {}
    paired: dict[tuple[bool, int], tuple[int, float]] = {}
    for compiled in compile_modes:
        for batch in batch_sizes:
            def run(variant: str) -> dict[str, Any]:
                return spawn(dict(variant=variant, config=config.to_dict(), batch_size=batch, context=context,
                                  precision=args.precision, compile=compiled,
                                  optimizer_compile=args.optimizer_compile == "on", steps=args.steps,
                                  warmup=args.warmup, device=device, loss_chunk_tokens=args.loss_chunk_tokens,
                                  activation_checkpointing=args.activation_checkpointing, threads=args.threads))

            def progress(r: int, variant: str, result: dict[str, Any]) -> None:
                shown = "out of memory" if result.get("oom") else f"{result['tokens_per_s']:10.0f} tokens/s"
                print(f"  compile={'on ' if compiled else 'off'} batch {batch:4d} repeat {r}: {variant:9s} {shown}",
                      flush=True)

            runs = interleaved({v: (lambda v=v: run(v)) for v in variants}, args.repeats, alternate=True,
                               on_result=progress)
            both = [(o["tokens_per_s"], r["tokens_per_s"]) for o, r in zip(runs.get("ours", []), runs.get("reference", []))
                    if not (o.get("oom") or r.get("oom"))]
            if both:
                paired[(compiled, batch)] = (len(both), paired_ratio(*zip(*both)))
            for variant, results in runs.items():
                ok = [x for x in results if not x.get("oom")]
                if ok:
                    figures[(compiled, batch, variant)] = medians(
                        {k: [x[k] for x in ok] for k in ("tokens_per_s", "step_s", "peak_bytes")})
    report(figures, paired, fpt, peak)


def report(medians: dict[tuple[bool, int, str], dict[str, float]], paired: dict[tuple[bool, int], tuple[int, float]],
           fpt: int, peak: Optional[float]) -> None:
    """The medians table, ratios ours / reference, and compile speed-ups."""
    print(f"\nmedians (FLOPs/token {fpt:,}; MFU {'from a peak of %.0f TFLOP/s' % (peak / 1e12) if peak else 'unknown peak'}):")
    print(f"{'compile':8s} {'batch':>5s} {'loop':10s} {'tokens/s':>10s} {'step ms':>9s} {'MFU':>7s} {'peak MiB':>9s}"
          f" {'tok/s ratio':>11s} {'mem ratio':>9s}")
    for (compiled, batch, variant), m in sorted(medians.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "reference")):
        ref = medians.get((compiled, batch, "reference"))
        mfu = f"{fpt * m['tokens_per_s'] / peak:7.1%}" if peak else "    n/a"
        ratio = f"{m['tokens_per_s'] / ref['tokens_per_s']:11.3f}" if ref and variant == "ours" else ""
        mem = f"{m['peak_bytes'] / ref['peak_bytes']:9.3f}" if ref and variant == "ours" and ref["peak_bytes"] > 0 else ""
        print(f"{'on' if compiled else 'off':8s} {batch:5d} {variant:10s} {m['tokens_per_s']:10.0f} {m['step_s'] * 1e3:9.1f}"
              f" {mfu} {m['peak_bytes'] / 2**20:9.1f} {ratio} {mem}")
    for (compiled, batch), (count, ratio) in sorted(paired.items()):
        # adjacent runs share the machine's load, so their ratio is steadier than a ratio of medians
        print(f"ours / reference, median of {count} adjacent pairs, compile {'on' if compiled else 'off'}, "
              f"batch {batch}: {ratio:.3f}")
    for variant in ("ours", "reference"):
        for batch in sorted({b for (_, b, _) in medians}):
            eager, compiled = medians.get((False, batch, variant)), medians.get((True, batch, variant))
            if eager and compiled:
                print(f"compile speed-up, {variant:9s} batch {batch}: {compiled['tokens_per_s'] / eager['tokens_per_s']:.3f}x")


if __name__ == "__main__":
    main()
