"""Training-step throughput on CPU (fp32): ours vs a reference built from stock PyTorch modules.

One step = forward + cross-entropy + backward + optimizer step at batch 8 x context 256.
The reference is a GPT-2-shaped model (LayerNorm, GELU MLP, learned positions, tied
embeddings, biases) made of `nn.Linear`, `nn.Embedding`, `nn.LayerNorm`,
`F.scaled_dot_product_attention` and `torch.optim.AdamW`. Ours runs the same GPT-2 preset with
`attention='fused'` (the headline ratio), plus `attention='reference'` and the Llama preset.
Variants are timed in interleaved rounds; medians of tokens/s are printed.

    python benchmarks/train_step.py [--repeats 5] [--steps 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from llm_lit.optim import AdamW, param_groups  # noqa: E402


class RefBlock(nn.Module):
    """Pre-norm GPT-2 block from stock modules (one fused qkv Linear, as nanoGPT does)."""

    def __init__(self, d: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d_ff)
        self.out = nn.Linear(d_ff, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class RefGPT(nn.Module):
    """GPT-2-shaped reference LM: learned positions, tied lm_head, biases."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.context_length, c.d_model)
        self.blocks = nn.ModuleList(RefBlock(c.d_model, c.n_heads, c.d_ff) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.tok.weight

    def loss(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def make_variants(args: argparse.Namespace) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    shape = dict(vocab_size=args.vocab, context_length=args.context, d_model=args.d_model,
                 n_layers=args.layers, n_heads=args.heads)
    variants = {}
    torch.manual_seed(0)
    ref = RefGPT(ModelConfig.gpt2(**shape))
    variants["reference (torch.nn + torch AdamW)"] = (ref, torch.optim.AdamW(ref.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1))
    for name, config in [
        ("ours gpt2 attention=fused", ModelConfig.gpt2(**shape, attention="fused")),
        ("ours gpt2 attention=reference", ModelConfig.gpt2(**shape, attention="reference")),
        ("ours llama attention=fused", ModelConfig.llama(**shape, attention="fused")),
    ]:
        torch.manual_seed(0)
        model = TransformerLM(config)
        variants[name] = (model, AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1))
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
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (model, optimizer) in variants.items():
            rates[name].append(tokens / train_steps(model, optimizer, ids, targets, args.steps))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch {args.batch} x ctx {args.context}, "
          f"{args.layers}L/{args.heads}H/d{args.d_model}/vocab {args.vocab}, {args.repeats} repeats x {args.steps} steps")
    reference = statistics.median(rates["reference (torch.nn + torch AdamW)"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:36s} {median:9.0f} tokens/s   ratio vs reference {median / reference:.3f}")


if __name__ == "__main__":
    main()
