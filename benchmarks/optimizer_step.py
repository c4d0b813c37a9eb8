"""Benchmark: one AdamW step over a preset's parameters, ours vs torch.optim.AdamW (fused and foreach).

    python benchmarks/optimizer_step.py --config gpt2-small --threads 1
    python benchmarks/optimizer_step.py --config llama-small --threads 1 --tile 65536,262144

Ours is `llm_lit.optim.AdamW` (from scratch), eager (tiled `torch._foreach_*` ops, eight passes
over each tile) and with `compile=True` (one torch.compile'd pass per parameter; its compilation
happens in the untimed first step); the references are `torch.optim.AdamW(fused=True)` (one C++ pass per tensor) and
`torch.optim.AdamW(foreach=True)`, over the same decayed / non-decayed groups. Gradients
are random and fixed; the first step (state allocation) is not timed. Prints medians of
`--repeats` steps and the ratios ours / reference of step time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import llm_lit.optim.adamw as adamw  # noqa: E402
from llm_lit.presets import load_preset  # noqa: E402
from llm_lit.model import TransformerLM  # noqa: E402
from llm_lit.optim import AdamW, param_groups  # noqa: E402
from report import print_medians, seconds  # noqa: E402


def step_times(optimizer: torch.optim.Optimizer, repeats: int) -> list[float]:
    """Seconds of each of `repeats` steps, after a first (untimed) step that allocates the state and compiles."""
    optimizer.step()
    return [seconds(optimizer.step) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gpt2-small")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tile", default=None, help="our tile sizes to try, comma-separated (default: ours)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config, _, _ = load_preset(args.config)
    torch.manual_seed(0)
    model = TransformerLM(config)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.config}: {n / 1e6:.1f}M parameters, {torch.get_num_threads()} threads, torch {torch.__version__}")
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

if __name__ == "__main__":
    main()
