"""Training-step throughput on CPU (fp32): ours vs a reference built from stock PyTorch modules.

One step = forward + cross-entropy + backward + optimizer step at batch 8 x context 256.
The reference is `benchmarks/reference_model.py`'s `ReferenceLM` at the GPT-2 preset (LayerNorm,
GELU MLP, learned positions, tied embeddings, biases), made of `nn.Linear`, `nn.Embedding`,
`nn.LayerNorm`, `F.scaled_dot_product_attention`, with fused `torch.optim.AdamW`. Ours runs the same GPT-2 preset with
`kernels='torch'` and our AdamW's one-pass compiled update (`compile=True`, its fast path, as fused is torch's:
the headline ratio), plus the eager update, `kernels='reference'` and the Llama preset.

Every variant lives in worker processes of its own (`--processes` of them), with freed memory kept for
reuse as `llm_lit fit` runs (`llm_lit.run.host_memory`), and the workers take turns: one times `--steps`
steps while the others wait. In one shared process the variants' tensors would interleave in one heap,
and where a 64 MiB logits buffer lands (on pages already in use, or on fresh ones that fault in) would
depend on which variants were built before it, not on the variant itself. One process is not enough
either: two processes of the same variant can differ by a percent or two for their whole lives, so
round r times each variant in its process r mod `--processes`, and a variant's median is over all of
its processes. Rounds alternate their order (odd rounds run the variants in reverse), and medians of
tokens/s are printed with each ratio to the reference: the ratio of medians and the median of the
paired ratios of each round.

    python benchmarks/train_step.py [--repeats 12] [--processes 2] [--steps 3] [--batch 8] [--show-runs]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.run.host_memory import keep_freed_memory  # noqa: E402

KEPT = keep_freed_memory()  # before torch allocates anything, as the command line does; workers inherit it

import torch  # noqa: E402
from torch import nn  # noqa: E402

from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from llm_lit.optim import AdamW, param_groups  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import ReferenceLM, reference_optimizer  # noqa: E402
from report import interleaved, print_medians  # noqa: E402

REFERENCE = "reference (torch.nn + torch AdamW)"
Variant = tuple[nn.Module, torch.optim.Optimizer]


def _ours(preset: str, kernels: str, compiled: bool) -> Callable[[dict], Variant]:
    def build(shape: dict) -> Variant:
        model = TransformerLM(getattr(ModelConfig, preset)(**shape, kernels=kernels))
        return model, AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, compile=compiled)
    return build


def _reference(shape: dict) -> Variant:
    model = ReferenceLM(ModelConfig.gpt2(**shape))
    return model, reference_optimizer(model, lr=1e-4)


VARIANTS: dict[str, Callable[[dict], Variant]] = {
    REFERENCE: _reference,
    "ours gpt2 kernels=torch": _ours("gpt2", "torch", compiled=True),
    "ours gpt2 kernels=torch, eager update": _ours("gpt2", "torch", compiled=False),
    "ours gpt2 kernels=reference": _ours("gpt2", "reference", compiled=True),
    "ours llama kernels=torch": _ours("llama", "torch", compiled=True),
}


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, targets: torch.Tensor, steps: int) -> float:
    """Seconds for `steps` full training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.loss(ids, targets).backward()
        optimizer.step()
    return time.perf_counter() - start


def worker(name: str, args: argparse.Namespace, conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    """Build variant `name`, warm it up (the compiled variants compile here), then answer each request
    with the tokens/s of `args.steps` steps, until the parent sends None."""
    shape = dict(vocab_size=args.vocab, context_length=args.context, d_model=args.d_model,
                 n_layers=args.layers, n_heads=args.heads)
    torch.manual_seed(0)
    model, optimizer = VARIANTS[name](shape)
    torch.manual_seed(1)
    ids = torch.randint(0, args.vocab, (args.batch, args.context))
    targets = torch.randint(0, args.vocab, (args.batch, args.context))
    train_steps(model, optimizer, ids, targets, 2)
    conn.send(torch.get_num_threads())
    tokens = args.batch * args.context * args.steps
    while conn.recv() is not None:
        conn.send(tokens / train_steps(model, optimizer, ids, targets, args.steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--processes", type=int, default=2, help="worker processes per variant, taking rounds in turn")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--show-runs", action="store_true", help="print every run's tokens/s too")
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    pipes, workers = {}, []
    for name in VARIANTS:
        for index in range(args.processes):
            pipes[name, index], child_end = spawn.Pipe()
            workers.append(spawn.Process(target=worker, args=(name, args, child_end), daemon=True))
            workers[-1].start()
            child_end.close()  # so that a worker that dies ends the parent's recv with EOFError instead of a hang
    threads = {pipe.recv() for pipe in pipes.values()}  # every worker built and warmed up
    runs_so_far = dict.fromkeys(VARIANTS, 0)

    def timed(name: str) -> float:
        """Tokens/s of one run of `name`, in its process next in turn."""
        pipe = pipes[name, runs_so_far[name] % args.processes]
        runs_so_far[name] += 1
        pipe.send("run")
        return pipe.recv()

    rates = interleaved({name: (lambda n=name: timed(n)) for name in VARIANTS}, args.repeats, alternate=True)
    for pipe in pipes.values():
        pipe.send(None)
    for process in workers:
        process.join()

    print(f"torch {torch.__version__}, {'/'.join(map(str, sorted(threads)))} threads, fp32, batch {args.batch} x ctx {args.context}, "
          f"{args.layers}L/{args.heads}H/d{args.d_model}/vocab {args.vocab}, {args.repeats} repeats x {args.steps} steps, "
          f"{args.processes} processes per variant taking rounds in turn, freed memory {'kept for reuse' if KEPT else 'returned to the OS (glibc thresholds)'}")
    print_medians(rates, references=[REFERENCE], unit="tokens/s", digits=0, show_runs=args.show_runs)


if __name__ == "__main__":
    main()
