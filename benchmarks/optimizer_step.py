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
decay (the same math, bitwise). Muon: the matrices inside the blocks (`llm_lit.optim.muon.muon_matrices`), ours
with the Newton–Schulz iteration in bfloat16 and `torch.optim.Muon` (the same math, bitwise); then the whole
optimizer as `model.optimizer.name muon` builds it (Muon + our eager AdamW for the rest) against
torch.optim.Muon + torch.optim.AdamW(fused=True) for the rest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import llm_lit.optim.adamw as adamw  # noqa: E402
from llm_lit.commands.presets import load_preset  # noqa: E402
from llm_lit.model import TransformerLM  # noqa: E402
from llm_lit.optim.muon import muon_matrices  # noqa: E402
from llm_lit.optim import SGD, AdamW, Muon, OptimizerConfig, build_optimizer, param_groups  # noqa: E402
from report import interleaved, print_medians, seconds  # noqa: E402


class Together:
    """Several optimizers stepped as one (the reference for Muon + AdamW)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def step_times(optimizer: torch.optim.Optimizer, repeats: int) -> list[float]:
    """Seconds of each of `repeats` steps, after a first (untimed) step that allocates the state and compiles."""
    optimizer.step()
    return [seconds(optimizer.step) for _ in range(repeats)]


def alternating_step_times(optimizers: dict[str, torch.optim.Optimizer], repeats: int) -> dict[str, list[float]]:
    """Seconds of each optimizer's steps, stepping them in turn (one step each per round), so that a
    busy machine's slow spells fall on all of them alike."""
    for optimizer in optimizers.values():
        optimizer.step()  # allocates the state
    return interleaved({name: (lambda o=optimizer: seconds(o.step)) for name, optimizer in optimizers.items()},
                       repeats, alternate=True)


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
    # One optimizer at a time (each holds the state of every parameter), so its steps run back to back.
    times = {f"torch AdamW {kind}": step_times(torch.optim.AdamW(param_groups(model, 0.1), **{kind: True}, **kwargs),
                                                args.repeats) for kind in ("fused", "foreach")}
    tiles = [int(t) for t in args.tile.split(",")] if args.tile else [adamw.TILE_ELEMENTS_CPU]
    for tile in tiles:
        adamw.TILE_ELEMENTS_CPU = tile
        times[f"ours (tile {tile})"] = step_times(AdamW(param_groups(model, 0.1), **kwargs), args.repeats)
    times["ours compiled"] = step_times(AdamW(param_groups(model, 0.1), compile=True, **kwargs), args.repeats)
    print("median step time; ratios are of times:")
    print_medians(times, references=["torch AdamW fused", "torch AdamW foreach"], unit="ms", scale=1e3)

def sgd_steps(model: TransformerLM, args: argparse.Namespace) -> None:
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=0.0)
    times = alternating_step_times({"torch SGD foreach": torch.optim.SGD(param_groups(model, 0.0), foreach=True, **kwargs),
                                    "ours SGD": SGD(param_groups(model, 0.0), **kwargs)}, args.repeats)
    print("median step time (momentum 0.9; steps alternate); ratios are of times:")
    print_medians(times, references=["torch SGD foreach"], unit="ms", scale=1e3)


def muon_steps(model: TransformerLM, args: argparse.Namespace) -> None:
    matrices = muon_matrices(model)
    ids = {id(p) for p in matrices}
    rest = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in param_groups(model, 0.1)]
    rest = [g for g in rest if g["params"]]
    share = sum(p.numel() for p in matrices) / sum(p.numel() for p in model.parameters())
    kwargs = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.1)
    whole, _ = build_optimizer(OptimizerConfig(name="muon", warmup_steps=0), model, 10, hidden_matrices=matrices)
    times = alternating_step_times({
        "torch Muon": torch.optim.Muon(matrices, **kwargs),
        "ours Muon": Muon(matrices, ns_dtype="bfloat16", **kwargs),
        "ours Muon, NS float32": Muon(matrices, ns_dtype="float32", **kwargs),
        "torch Muon + AdamW fused": Together(torch.optim.Muon(matrices, **kwargs),
                                             torch.optim.AdamW(rest, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)),
        "ours (model.optimizer.name muon)": whole,
    }, args.muon_repeats)
    print(f"median step time ({len(matrices)} block matrices, {share:.0%} of the parameters; Newton-Schulz in "
          "bfloat16 unless said; steps alternate); ratios are of times:")
    print_medians(times, references=["torch Muon", "torch Muon + AdamW fused"], unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
