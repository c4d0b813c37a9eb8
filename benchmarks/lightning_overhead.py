"""Does the Lightning loop cost anything? tokens/s of `Trainer.fit` vs a plain PyTorch loop.

Both train the same `TransformerLM` on the same memory-mapped windows with the same AdamW,
cosine-warmup schedule and global-norm clipping, in this one process. Runs are interleaved
(plain, Lightning, Lightning, plain, ...) and each figure is the median over repeats of the
tokens/s measured after a few warm-up steps.

    python benchmarks/lightning_overhead.py [--steps 60] [--warmup 10] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from llm_lit.data import RandomWindows, TextDataModule  # noqa: E402
from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from llm_lit.training.module import LanguageModel, OptimizerConfig  # noqa: E402
from llm_lit.optim import AdamW, clip_grad_norm, cosine_warmup_scheduler, param_groups  # noqa: E402
from report import interleaved, print_medians  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    p.add_argument("--repeats", type=int, default=3, help="runs of each loop (interleaved)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--progress-bar", action="store_true", help="keep Lightning's progress bar on")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for both loops (default: torch's)")
    return p.parse_args()


def plain_loop(config: ModelConfig, tokens, args: argparse.Namespace, opt_config: OptimizerConfig) -> list[float]:
    """Step times (s) of a hand-written loop: fetch, forward, backward, clip, AdamW step, schedule step."""
    torch.manual_seed(0)
    model = TransformerLM(config).train()
    opt = AdamW(param_groups(model, opt_config.weight_decay), lr=opt_config.lr, betas=opt_config.betas,
                eps=opt_config.eps, weight_decay=opt_config.weight_decay)
    schedule = cosine_warmup_scheduler(opt, opt_config.lr, opt_config.min_lr, opt_config.warmup_steps, args.steps)
    loader = DataLoader(RandomWindows(tokens, args.context, args.batch_size, seed=1337), batch_size=None)
    ends = [time.perf_counter()]
    for step, (x, y) in enumerate(loader):
        if step == args.steps:
            break
        loss = model.loss(x, y)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:])][args.warmup:]


class StepTimer(L.Callback):
    """Times between consecutive ends of training batches: everything the loop does per step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.ends = [time.perf_counter()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())


def lightning_loop(config: ModelConfig, datamodule: TextDataModule, args: argparse.Namespace,
                   opt_config: OptimizerConfig, log_dir: str) -> list[float]:
    """Step times (s) of `Trainer.fit` with llm_lit's LanguageModel and its logging (TensorBoard, every 10 steps)."""
    torch.manual_seed(0)
    module = LanguageModel(config, opt_config, grad_clip=1.0, sample_prompts=[])
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, limit_val_batches=0,
                        enable_checkpointing=False, enable_progress_bar=args.progress_bar,
                        enable_model_summary=False, log_every_n_steps=10, callbacks=[timer],
                        logger=L.pytorch.loggers.TensorBoardLogger(log_dir), num_sanity_val_steps=0)
    datamodule.train_batches_consumed = 0
    trainer.fit(module, datamodule=datamodule)
    return [b - a for a, b in zip(timer.ends, timer.ends[1:])][args.warmup:]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ModelConfig(vocab_size=args.vocab, context_length=args.context, d_model=args.d_model,
                         n_layers=args.layers, n_heads=args.heads)
    opt_config = OptimizerConfig(lr=3e-3, min_lr=3e-4, warmup_steps=5)
    datamodule = TextDataModule(vocab_size=args.vocab, context_length=args.context, batch_size=args.batch_size,
                                seed=1337)
    datamodule.prepare_data()
    datamodule.setup("fit")
    print(f"model: {config.d_model}x{config.n_layers} layers, vocab {config.vocab_size}, "
          f"batch {args.batch_size}x{args.context} tokens, {torch.get_num_threads()} threads; "
          f"{args.steps} steps, first {args.warmup} untimed, {args.repeats} interleaved repeats", flush=True)
    tokens_per_step = args.batch_size * args.context

    def progress(r: int, which: str, times: list[float]) -> None:
        print(f"  repeat {r}: {which:9s} median step {1e3 * statistics.median(times):7.1f} ms, "
              f"mean {1e3 * statistics.fmean(times):7.1f} ms", flush=True)

    with tempfile.TemporaryDirectory() as log_dir:
        loops = {"plain PyTorch loop (reference)": lambda: plain_loop(config, datamodule.train_tokens, args,
                                                                      opt_config),
                 "Lightning fit (ours)": lambda: lightning_loop(config, datamodule, args, opt_config, log_dir)}
        runs = interleaved(loops, args.repeats, alternate=True, on_result=progress)

    for name, reduce in (("median step time", statistics.median), ("mean step time (all costs)", statistics.fmean)):
        # tokens/s of each run from its reduced step time; medians over runs
        print(f"[{name}] tokens/s:")
        print_medians({which: [tokens_per_step / reduce(times) for times in r] for which, r in runs.items()},
                      references=["plain PyTorch loop (reference)"], unit="tokens/s", digits=0)


if __name__ == "__main__":
    main()
