"""Callbacks Lightning lacks: train metrics written before checkpoints, tokens/s + MFU logging, and
writing `predict` output.

(Sampled continuations at each validation are logged by `LanguageModel` itself, since it
owns the tokenizer and the sampling settings.)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from llm_lit.errors import Interrupted
from llm_lit.training.lightning_compat import logger_step, should_update_logs
from llm_lit.training.peak_flops import device_peak_flops
from tokenizer.atomic import atomic_write


class SpeedMonitor(L.Callback):
    """Logs `perf/tokens_per_s` (all devices together) and, on known GPUs, `perf/mfu` at each logging step.

    Time is measured over the steps since the previous logging step, validation excluded,
    with one device synchronisation per logging step (none in between). MFU counts the model's
    FLOPs (`TransformerLM.flops_per_token`); an optimizer that does matmul work of its own (Muon's
    Newton–Schulz iterations, its `flops_per_step()`) adds `perf/hfu`, which counts those too.
    """

    def __init__(self) -> None:
        self._tokens = 0
        self._elapsed = 0.0
        self._since: Optional[float] = None
        self._peak: Optional[float] = None
        self._flops_per_token: Optional[int] = None
        self._optimizer_flops_per_token = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._peak = device_peak_flops(pl_module.device, str(trainer.precision))
        self._flops_per_token = None

    def _clock(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._since is None:
            self._since = self._clock(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        x = batch[0]
        self._tokens += x.numel()
        if self._flops_per_token is None:
            self._flops_per_token = pl_module.model.flops_per_token(seq_len=x.shape[1])
            optimizer_flops = getattr(trainer.optimizers[0], "flops_per_step", None) if trainer.optimizers else None
            per_step = optimizer_flops() if optimizer_flops is not None else 0  # each device runs the whole update
            self._optimizer_flops_per_token = per_step / (x.numel() * trainer.accumulate_grad_batches)
        if not is_logging_step(trainer, batch_idx) or self._since is None:
            return
        now = self._clock(pl_module)
        elapsed = self._elapsed + (now - self._since)
        tokens_per_s = self._tokens * trainer.world_size / max(elapsed, 1e-9)
        metrics = {"perf/tokens_per_s": tokens_per_s}
        if self._peak is not None:
            metrics["perf/mfu"] = self._flops_per_token * tokens_per_s / (self._peak * trainer.world_size)
            if self._optimizer_flops_per_token:
                metrics["perf/hfu"] = ((self._flops_per_token + self._optimizer_flops_per_token) * tokens_per_s
                                       / (self._peak * trainer.world_size))
        write_step_metrics(trainer, pl_module, metrics)
        self._tokens, self._elapsed, self._since = 0, 0.0, now

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Pause the clock; the next training batch restarts it.
        if self._since is not None:
            self._elapsed += self._clock(pl_module) - self._since
            self._since = None


class TrainMetricsWriter(L.Callback):
    """Writes the train metrics of each logging step (`pl_module.train_step_metrics()`, and `epoch` as
    Lightning adds it) to the loggers and flushes them before any checkpoint of that step is saved.

    Lightning writes what `self.log` collects only after every `on_train_batch_end` hook, so after
    a ModelCheckpoint has saved in that hook; a SIGKILL in between would lose the log line of the
    checkpointed step, which the resumed run starts after. This hook runs first (Lightning keeps
    checkpoint callbacks last) and writes at the step Lightning would use, with the same tags
    (`write_step_metrics`; `SpeedMonitor` writes its own the same way). The values also reach
    `trainer.callback_metrics` (and the progress bar's `loss`). Every logger is also flushed as each
    optimizer step starts, so the previous step's logs reach the disk before this one can crash.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx % trainer.accumulate_grad_batches == 0:
            for logger in trainer.loggers:
                logger.save()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not is_logging_step(trainer, batch_idx):
            return
        metrics = pl_module.train_step_metrics()
        pl_module.log("loss", metrics["train/loss"], on_step=True, on_epoch=False, prog_bar=True, logger=False)
        write_step_metrics(trainer, pl_module, {**metrics, "epoch": logged_epoch(trainer)})


def logged_epoch(trainer: L.Trainer) -> float:
    """The `epoch` logged beside the metrics: Lightning's `current_epoch` in a run of epochs; 0 in a run of steps
    on endless random windows, which is one epoch however often it is stopped and resumed (Lightning counts the
    epoch a stopped run ends in as completed, so a resumed run would otherwise log the next one from its first
    step on, and another at each resume)."""
    if trainer.max_epochs not in (None, -1) or math.isfinite(trainer.num_training_batches):
        return float(trainer.current_epoch)
    return 0.0


def write_step_metrics(trainer: L.Trainer, pl_module: L.LightningModule, metrics: dict[str, Any]) -> None:
    """Log `metrics` of this training step (`trainer.callback_metrics` only) and write them to every logger at
    Lightning's logger step at once, flushed, so that a checkpoint saved later in this step never finds them
    missing on disk (which a SIGKILL right after it would make permanent)."""
    pl_module.log_dict({k: v for k, v in metrics.items() if k != "epoch"}, on_step=True, on_epoch=False, logger=False)
    step = logger_step(trainer)  # Lightning's own logger step
    scalars = convert_tensors_to_scalars(metrics)
    for logger in trainer.loggers:
        logger.log_metrics(scalars, step=step)
        logger.save()


def is_logging_step(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether the micro-batch `batch_idx` ends an optimizer step at which the trainer writes logs."""
    ends_step = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
    return ends_step and should_update_logs(trainer)


class PredictionWriter(L.Callback):
    """Prints each continuation of `predict` and writes them all to a JSONL file (atomically, at the end).

    Each line is `{"prompt": ..., "completion": ..., "num_tokens": ...}`. With several
    processes, rank r writes `<stem>.rank<r>.jsonl`.
    """

    def __init__(self, output_path: str | Path = "predictions.jsonl", echo: bool = True) -> None:
        self.output_path = Path(output_path)
        self.echo = echo
        self._rows: list[dict[str, Any]] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        for row in outputs:
            self._rows.append(row)
            if self.echo:
                echo(trainer, f"{row['prompt']}{row['completion']}\n{'-' * 40}")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._write(trainer)
        if self.echo and trainer.is_global_zero:
            count = len(self._rows)
            print(f"Wrote {count} continuation{'' if count == 1 else 's'} to {path}", flush=True)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Stopped by a signal: keep the continuations finished so far (written as at the end), and say so."""
        if not isinstance(exception, Interrupted) or trainer.state.fn != "predict" or exception.done:
            return
        total = _prompt_count(trainer)
        finished = f"predict had finished {len(self._rows)}" + (f" of {total}" if total is not None else "") + " prompts"
        if not self._rows:
            exception.done = f"{finished}; nothing was written."
            return
        exception.done = f"{finished}; wrote their continuations to {self._write(trainer)}."

    def _write(self, trainer: L.Trainer) -> Path:
        """Write the rows (atomically) to the output path (`<stem>.rank<r>.jsonl` on rank r of several); returns it."""
        path = self.output_path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        with atomic_write(path, "w") as f:
            for row in self._rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path


def _prompt_count(trainer: L.Trainer) -> Optional[int]:
    """The number of prompts `predict` was given on this rank (None if its data loader cannot say)."""
    loaders = trainer.predict_dataloaders
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    try:
        return sum(len(loader.dataset) for loader in loaders)
    except (TypeError, AttributeError):
        return None


def echo(trainer: L.Trainer, text: str) -> None:
    """Print `text` on lines of its own while a progress bar may be drawn.

    A TQDM bar is redrawn in place on the current line, so text printed plainly would continue
    that line; TQDM's `write` clears the bar, prints, and redraws it below. (Rich's bar, when rich
    is installed, already moves plain prints above itself.)
    """
    if isinstance(trainer.progress_bar_callback, TQDMProgressBar):
        Tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()
    else:
        print(text, flush=True)
