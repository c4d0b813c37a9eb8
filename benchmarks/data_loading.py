"""Is the data path ever the bottleneck? Window sampling tokens/s vs what the model consumes.

Samples training windows at the gpt2-small shape (16 x 1024 tokens per micro-batch) from a
memory-mapped uint16 token file (`--tokens` random ids written to a temp file) with:

* ours: `llm_lit.data.RandomWindows` (hash-seeded, resumable windows), called directly and
  through a `DataLoader` (`batch_size=None`, as `TextDataModule` builds it);
* reference: nanoGPT's `get_batch` (`torch.randint` starts, `torch.stack` of `from_numpy` slices).

Repeats are interleaved and medians printed. The consumption they are compared with is
(a) the GPU rate the model would need, gpt2-small at `--mfu` of an H100's bf16 peak (from
`llm_lit.training.peak_flops.PEAK_FLOPS` and `TransformerLM.flops_per_token`), and (b) our training
tokens/s of gpt2-small measured here on this CPU (fp32, batch 1 x 1024, `--model-steps`).

    python benchmarks/data_loading.py [--repeats 5] [--batches 200] [--model-steps 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from llm_lit.commands.accounting import flops_per_token  # noqa: E402
from llm_lit.training.peak_flops import peak_flops  # noqa: E402
from llm_lit.commands.presets import load_preset  # noqa: E402
from llm_lit.data import RandomWindows  # noqa: E402
from llm_lit.model import TransformerLM  # noqa: E402
from llm_lit.optim import AdamW, clip_grad_norm, param_groups  # noqa: E402
from report import interleaved, print_medians  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=50_000_000, help="size of the token file (uint16 ids)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--batches", type=int, default=200, help="micro-batches per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--mfu", type=float, default=0.5, help="MFU of the GPU whose consumption is the target")
    p.add_argument("--device-name", default="H100", help="GPU of the target consumption (a PEAK_FLOPS key)")
    p.add_argument("--model-steps", type=int, default=2, help="timed CPU training steps of gpt2-small (0: skip)")
    return p.parse_args()


def nanogpt_batches(tokens: np.ndarray, batch: int, context: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """The reference sampler: nanoGPT's get_batch on a memmap."""
    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(tokens) - context, (batch,))
        x = torch.stack([torch.from_numpy(tokens[i:i + context].astype(np.int64)) for i in starts.tolist()])
        y = torch.stack([torch.from_numpy(tokens[i + 1:i + 1 + context].astype(np.int64)) for i in starts.tolist()])
        return x, y
    return get_batch


def time_batches(next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]], n: int, tokens_per_batch: int) -> float:
    """tokens/s of drawing `n` batches."""
    start = time.perf_counter()
    for _ in range(n):
        x, y = next_batch()
    assert x.dtype == torch.int64 and y.shape == x.shape
    return n * tokens_per_batch / (time.perf_counter() - start)


def cpu_model_tokens_per_s(steps: int, context: int) -> float:
    """Our gpt2-small training tokens/s on this CPU (fp32, batch 1 x context, AdamW + clipping)."""
    config, _, _ = load_preset("gpt2-small")
    torch.manual_seed(0)
    model = TransformerLM(config)
    optimizer = AdamW(param_groups(model, 0.1), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (1, context))

    def step() -> None:
        model.loss(ids, ids).backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (optimizer state allocation)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * context / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    tokens_per_batch = args.batch_size * args.context
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.bin"
        rng = np.random.default_rng(0)
        rng.integers(0, 50304, size=args.tokens, dtype=np.uint16).tofile(path)
        tokens = np.memmap(path, dtype=np.uint16, mode="r")

        windows = RandomWindows(tokens, args.context, args.batch_size, seed=1337)
        counter = iter(range(10**12))
        loader_iter = iter(DataLoader(RandomWindows(tokens, args.context, args.batch_size, seed=7), batch_size=None))
        samplers = {
            "ours: RandomWindows.batch": lambda: windows.batch(next(counter)),
            "ours: through DataLoader": lambda: next(loader_iter),
            "reference: nanoGPT get_batch": nanogpt_batches(tokens, args.batch_size, args.context),
        }
        for sample in samplers.values():  # warm the page cache and the loader
            time_batches(sample, 20, tokens_per_batch)
        rates = interleaved({name: (lambda sample=sample: time_batches(sample, args.batches, tokens_per_batch))
                             for name, sample in samplers.items()}, args.repeats, alternate=True)
        del loader_iter, tokens

    config, _, _ = load_preset("gpt2-small")
    fpt = flops_per_token(config, args.context)
    peak = peak_flops(args.device_name, "bf16-mixed")
    gpu_need = args.mfu * peak / fpt if peak else None
    cpu_need = cpu_model_tokens_per_s(args.model_steps, args.context) if args.model_steps > 0 else None

    print(f"window sampling, batch {args.batch_size} x {args.context} from a {args.tokens:,}-token uint16 memmap, "
          f"{args.repeats} interleaved repeats x {args.batches} batches, {torch.get_num_threads()} threads")
    ours = print_medians(rates, references=["reference: nanoGPT get_batch"], unit="M tokens/s",
                         scale=1e-6)["ours: through DataLoader"]
    print(f"gpt2-small consumption (FLOPs/token {fpt:,}):")
    if gpu_need:
        print(f"  {args.device_name} bf16 at {args.mfu:.0%} MFU would consume {gpu_need / 1e3:9.1f} k tokens/s "
              f"-> sampling (DataLoader) is {ours / gpu_need:8.1f}x that")
    if cpu_need:
        print(f"  this CPU, our fit step (fp32)  consumes {cpu_need / 1e3:9.3f} k tokens/s "
              f"-> sampling (DataLoader) is {ours / cpu_need:8.0f}x that")


if __name__ == "__main__":
    main()
