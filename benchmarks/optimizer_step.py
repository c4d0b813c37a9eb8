"""Benchmark: one optimizer step over a preset's parameters, ours vs torch's: AdamW (vs torch.optim.AdamW
fused and foreach), SGD with momentum (vs torch.optim.SGD foreach) and Muon (vs torch.optim.Muon).

    python benchmarks/optimizer_step.py --config gpt2-small --threads 1
    python benchmarks/optimizer_step.py --config llama-small --threads 1 --tile 65536,262144
    python benchmarks/optimizer_step.py --config shakespeare --threads 1 --optimizers sgd,muon

Ours is `llm_lit.optim.AdamW` (from scratch), eager (tiled `torch._foreach_*` ops, eight passes
over each tile) and with `compile=True` (one torch.compile'd pass per parameter; its compilation
happens in the untimed first step); the references are `torch.optim.AdamW(fused=True)` (one C++ pass per tensor) and
`torch.optim.AdamW(foreach=True)`, over the same decayed / non-decayed groups. Gradients
are random and fixed; the first step (state allocation) is not timed. Prints medians of
`--repeats` steps and the ratios ours / reference of step time.

SGD: ours (`llm_lit.optim.SGD`, foreach ops) and `torch.optim.SGD(foreach=True)`, momentum 0.9, no weight
decay (the same math, bitwise). Muon: the matrices inside the blocks (`llm_lit.module.muon_matrices`), ours
with the Newton–Schulz iteration in bfloat16 and `torch.optim.Muon` (the same math, bitwise); then the whole
optimizer as `model.optimizer.name muon` builds it (Muon + our eager AdamW for the rest) against
torch.optim.Muon + torch.optim.AdamW(fused=True) for the rest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import llm_lit.optim.adamw as adamw  # noqa: E402
from llm_lit.accounting import load_preset  # noqa: E402
from llm_lit.model import TransformerLM  # noqa: E402
from llm_lit.module import muon_matrices  # noqa: E402
from llm_lit.optim import SGD, AdamW, Muon, OptimizerConfig, build_optimizer, param_groups  # noqa: E402


class Together:
    """Several optimizers stepped as one (the reference for Muon + AdamW)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def median_step_ms(optimizer: torch.optim.Optimizer, repeats: int) -> float:
    optimizer.step()  # allocates the state (and compiles)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def alternating_step_ms(optimizers: dict[str, torch.optim.Optimizer], repeats: int) -> dict[str, float]:
    """Median step time of each optimizer, stepping them in turn (one step each per round), so that a
    busy machine's slow spells fall on all of them alike."""
    for optimizer in optimizers.values():
        optimizer.step()  # allocates the state
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(repeats):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gpt2-small")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--muon-repeats", type=int, default=None,
                        help="timed Muon steps (default: --repeats; on a CPU a gpt2-small Muon step takes seconds)")
    parser.add_argument("--tile", default=None, help="our tile sizes to try, comma-separated (default: ours)")
    parser.add_argument("--optimizers", default="adamw,sgd,muon", help="which to time, comma-separated")
    args = parser.parse_args()
    args.muon_repeats = args.muon_repeats or args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    config, _, _ = load_preset(args.config)
    torch.manual_seed(0)
    model = TransformerLM(config)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.config}: {n / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, torch {torch.__version__}")
    chosen = args.optimizers.split(",")
    if "adamw" in chosen:
        adamw_steps(model, args)
    if "sgd" in chosen:
        sgd_steps(model, args)
    if "muon" in chosen:
        muon_steps(model, args)


def adamw_steps(model: TransformerLM, args: argparse.Namespace) -> None:
    kwargs = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    fused = median_step_ms(torch.optim.AdamW(param_groups(model, 0.1), fused=True, **kwargs), args.repeats)
    foreach = median_step_ms(torch.optim.AdamW(param_groups(model, 0.1), foreach=True, **kwargs), args.repeats)
    print(f"  torch AdamW fused      {fused:8.1f} ms")
    print(f"  torch AdamW foreach    {foreach:8.1f} ms")
    tiles = [int(t) for t in args.tile.split(",")] if args.tile else [adamw.TILE_ELEMENTS_CPU]
    for tile in tiles:
        adamw.TILE_ELEMENTS_CPU = tile
        ours = median_step_ms(AdamW(param_groups(model, 0.1), **kwargs), args.repeats)
        print(f"  ours (tile {tile:>8d})  {ours:8.1f} ms   time ratio vs fused {ours / fused:.2f}, vs foreach {ours / foreach:.2f}")
    ours = median_step_ms(AdamW(param_groups(model, 0.1), compile=True, **kwargs), args.repeats)
    print(f"  ours compiled          {ours:8.1f} ms   time ratio vs fused {ours / fused:.2f}, vs foreach {ours / foreach:.2f}")


def sgd_steps(model: TransformerLM, args: argparse.Namespace) -> None:
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=0.0)
    ms = alternating_step_ms({"torch": torch.optim.SGD(param_groups(model, 0.0), foreach=True, **kwargs),
                              "ours": SGD(param_groups(model, 0.0), **kwargs)}, args.repeats)
    print(f"  torch SGD foreach      {ms['torch']:8.1f} ms   (momentum 0.9; steps alternate with ours)")
    print(f"  ours SGD               {ms['ours']:8.1f} ms   time ratio vs foreach {ms['ours'] / ms['torch']:.2f}")


def muon_steps(model: TransformerLM, args: argparse.Namespace) -> None:
    matrices = muon_matrices(model)
    ids = {id(p) for p in matrices}
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in param_groups(model, 0.1)]
    rest = [g for g in rest if g["params"]]
    share = sum(p.numel() for p in matrices) / sum(p.numel() for p in model.parameters())
    kwargs = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1)
    whole, _ = build_optimizer(OptimizerConfig(name="muon", warmup_steps=0), model, 10, hidden_matrices=matrices)
    ms = alternating_step_ms({
        "torch": torch.optim.Muon(matrices, **kwargs),
        "ours": Muon(matrices, ns_dtype="bfloat16", **kwargs),
        "ours float32": Muon(matrices, ns_dtype="float32", **kwargs),
        "torch + AdamW": Together(torch.optim.Muon(matrices, **kwargs),
                                  torch.optim.AdamW(rest, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)),
        "ours whole": whole,
    }, args.muon_repeats)
    print(f"  torch Muon             {ms['torch']:8.1f} ms   ({len(matrices)} block matrices, {share:.0%} of the "
          "parameters; Newton-Schulz in bfloat16; steps alternate)")
    print(f"  ours Muon              {ms['ours']:8.1f} ms   time ratio vs torch {ms['ours'] / ms['torch']:.2f}")
    print(f"  ours Muon, NS float32  {ms['ours float32']:8.1f} ms")
    print(f"  torch Muon + AdamW fused for the rest  {ms['torch + AdamW']:8.1f} ms")
    print(f"  ours (model.optimizer.name muon)       {ms['ours whole']:8.1f} ms   time ratio "
          f"{ms['ours whole'] / ms['torch + AdamW']:.2f}")


if __name__ == "__main__":
    main()
