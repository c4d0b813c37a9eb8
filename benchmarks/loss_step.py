"""The output layer and the loss, forward and backward: ours against torch's `F.linear` + `F.cross_entropy`.

Ours is what a torch-kernel model's `loss` runs by default: `chunked_linear_cross_entropy`, in one
chunk at these sizes, whose log-softmax gives the loss and whose exponential, taken in place, is
the logits' gradient. The reference is the plain path every stock PyTorch model takes: logits,
`F.cross_entropy` (a log-softmax pass), and in backward a zero-filled gradient and a log-softmax
backward pass over the whole logits. Both compute the same three matrix products.

Shapes: the `train_step.py` model (2,048 tokens, d_model 384, vocabulary 8,192) and the
shakespeare config's (1,024 tokens, d_model 128, vocabulary 2,048). Rounds alternate their order;
medians of milliseconds are printed with the ratio of ours to the reference's time.

    python benchmarks/loss_step.py [--repeats 15] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.run.host_memory import keep_freed_memory  # noqa: E402

keep_freed_memory()  # before torch allocates anything, as the command line does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from llm_lit.model.chunked_loss import chunked_linear_cross_entropy  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import interleaved, print_medians, seconds  # noqa: E402

SHAPES = {"train_step model": (2048, 384, 8192), "shakespeare config": (1024, 128, 2048)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="forward + backward passes per timed run")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, (tokens, d_model, vocab) in SHAPES.items():
        torch.manual_seed(0)
        hidden = torch.randn(tokens, d_model, requires_grad=True)
        weight = (torch.randn(vocab, d_model) * 0.02).requires_grad_()
        targets = torch.randint(0, vocab, (tokens,))

        def ours() -> None:
            chunked_linear_cross_entropy(hidden, weight, targets, chunk_tokens=tokens).backward()

        def reference() -> None:
            F.cross_entropy(F.linear(hidden, weight), targets).backward()

        def run(step) -> float:  # noqa: ANN001 - one of the two functions above
            def steps() -> None:
                for _ in range(args.steps):
                    hidden.grad = weight.grad = None
                    step()
            return seconds(steps) / args.steps

        ours(), reference()  # warm up
        times = interleaved({"ours (one function)": lambda: run(ours), "torch F.linear + F.cross_entropy": lambda: run(reference)},
                            args.repeats, alternate=True)
        print(f"{name}: {tokens} tokens x d_model {d_model} -> vocab {vocab}, fp32, {args.threads} threads, "
              f"{args.repeats} repeats x {args.steps} steps; ms per forward + backward (ratio: ours / torch's time)")
        print_medians(times, references=["torch F.linear + F.cross_entropy"], unit="ms", scale=1000.0, digits=2)


if __name__ == "__main__":
    main()
