"""Training-step throughput on CPU (fp32): ours vs a reference built from stock PyTorch modules.

One step = forward + cross-entropy + backward + optimizer step at batch 8 x context 256.
The reference is `benchmarks/reference_model.py`'s `ReferenceLM` at the GPT-2 preset (LayerNorm,
GELU MLP, learned positions, tied embeddings, biases), made of `nn.Linear`, `nn.Embedding`,
`nn.LayerNorm`, `F.scaled_dot_product_attention`, with fused `torch.optim.AdamW`. Ours runs the same GPT-2 preset with
`kernels='torch'` and our AdamW's one-pass compiled update (`compile=True`, its fast path, as fused is torch's:
the headline ratio), plus the eager update, `kernels='reference'` and the Llama preset. The warm-up steps compile.
Variants are timed in interleaved rounds; medians of tokens/s are printed. Every variant runs in this one
process with freed memory kept for reuse, as `llm_lit fit` runs (`llm_lit.run.host_memory`): with glibc's
own thresholds each step maps its large tensors afresh and faults their pages in, which costs both sides
alike and makes the ratio noisier.

    python benchmarks/train_step.py [--repeats 5] [--steps 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.run.host_memory import keep_freed_memory  # noqa: E402

KEPT = keep_freed_memory()  # before torch allocates anything, as the command line does

import torch  # noqa: E402
from torch import nn  # noqa: E402

from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from llm_lit.optim import AdamW, param_groups  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import ReferenceLM, reference_optimizer  # noqa: E402
from report import interleaved, print_medians  # noqa: E402


def make_variants(args: argparse.Namespace) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    shape = dict(vocab_size=args.vocab, context_length=args.context, d_model=args.d_model,
                 n_layers=args.layers, n_heads=args.heads)
    variants = {}
    torch.manual_seed(0)
    ref = ReferenceLM(ModelConfig.gpt2(**shape))
    variants["reference (torch.nn + torch AdamW)"] = (ref, reference_optimizer(ref, lr=1e-4))
    for name, config, compiled in [
        ("ours gpt2 kernels=torch", ModelConfig.gpt2(**shape, kernels="torch"), True),
        ("ours gpt2 kernels=torch, eager update", ModelConfig.gpt2(**shape, kernels="torch"), False),
        ("ours gpt2 kernels=reference", ModelConfig.gpt2(**shape, kernels="reference"), True),
        ("ours llama kernels=torch", ModelConfig.llama(**shape, kernels="torch"), True),
    ]:
        torch.manual_seed(0)
        model = TransformerLM(config)
        variants[name] = (model, AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                                       compile=compiled))
    return variants


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor, targets: torch.Tensor, steps: int) -> float:
    """Seconds for `steps` full training steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model.loss(ids, targets).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    args = parser.parse_args()

    variants = make_variants(args)
    ids = torch.randint(0, args.vocab, (args.batch, args.context))
    targets = torch.randint(0, args.vocab, (args.batch, args.context))
    for model, optimizer in variants.values():
        train_steps(model, optimizer, ids, targets, 2)  # warm-up
    tokens = args.batch * args.context * args.steps
    rates = interleaved({name: (lambda m=model, o=optimizer: tokens / train_steps(m, o, ids, targets, args.steps))
                         for name, (model, optimizer) in variants.items()}, args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {args.batch} x ctx {args.context}, "
          f"{args.layers}L/{args.heads}H/d{args.d_model}/vocab {args.vocab}, {args.repeats} repeats x {args.steps} steps, "
          f"freed memory {'kept for reuse' if KEPT else 'returned to the OS (glibc thresholds)'}")
    print_medians(rates, references=["reference (torch.nn + torch AdamW)"], unit="tokens/s", digits=0)


if __name__ == "__main__":
    main()
