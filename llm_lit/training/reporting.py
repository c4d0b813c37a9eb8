"""What a run shows where the user looks: samples on the console and in every logger that takes
text, one-time notes (`say_once`), the hyperparameters in every logger's hyperparameter view, and a summary when fit ends.

* Samples (`log_samples`): a framed block on the console (through the progress bar, rank 0),
  TensorBoard's text tab (`add_text`), a W&B table (`log_text`), and `samples.jsonl` beside a
  CSV logger's `metrics.csv` (one `{"step", "prompt", "completion"}` object a line).
* Hyperparameters (`RunReport.on_fit_start`): the model, optimizer and sampling settings and the
  data settings, as one nested dict given to each logger's `log_hyperparams`.
* Summary (`RunReport.on_fit_end`): steps run, the best validation loss / bpb and its checkpoint,
  the last checkpoint and the log folders.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

#: Lines of one sample shown on the console (the loggers get it whole).
CONSOLE_LINES = 8


@functools.lru_cache(maxsize=None)
def say_once(line: str) -> None:
    """Print `line` on rank zero, once per process (e.g. the optimizer's notes: it is built more than once per run)."""
    rank_zero_info(line)


def frame(title: str, rows: list[dict[str, Any]]) -> str:
    """The console block of samples: a titled rule, each prompt + completion (at most `CONSOLE_LINES`
    lines), a closing rule."""
    rule = "-" * 72
    parts = [f"---- {title} ".ljust(72, "-")]
    for i, row in enumerate(rows):
        lines = (row["prompt"] + row["completion"]).splitlines() or [""]
        if len(lines) > CONSOLE_LINES:
            lines = lines[:CONSOLE_LINES] + ["..."]
        if i:
            parts.append("")
        parts.extend(lines)
    parts.append(rule)
    return "\n".join(parts)


def log_samples(module: L.LightningModule, rows: list[dict[str, Any]], title: str) -> None:
    """Show sampled continuations `rows` (`{"prompt", "completion", ...}`) on the console and in every logger
    that takes text, at the current global step (rank 0 only)."""
    trainer = module.trainer
    if not trainer.is_global_zero or not rows:
        return
    module.print(frame(title, rows))
    step = module.global_step
    markdown = "\n\n".join(f"    {(r['prompt'] + r['completion'])}".replace("\n", "\n    ") for r in rows)
    for logger in trainer.loggers:
        experiment = None if isinstance(logger, CSVLogger) else getattr(logger, "experiment", None)
        if isinstance(logger, CSVLogger):
            _append_jsonl(Path(logger.log_dir) / "samples.jsonl",
                          [{"step": step, "prompt": r["prompt"], "completion": r["completion"]} for r in rows])
        elif hasattr(logger, "log_text"):  # W&B (and any logger with Lightning's log_text)
            logger.log_text(key="samples", columns=["step", "prompt", "completion"],
                            data=[[step, r["prompt"], r["completion"]] for r in rows], step=step)
        elif hasattr(experiment, "add_text"):  # TensorBoard
            experiment.add_text("samples", markdown, global_step=step)


def _append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def hyperparameters(module: L.LightningModule, datamodule: Any) -> dict[str, Any]:
    """The run's settings as one nested dict: model config, optimizer, sampling, training options, data."""
    def plain(value: Any) -> Any:
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value

    params: dict[str, Any] = {
        "model": module.config.to_dict(),
        "optimizer": plain(module.optimizer_config),
        "sampling": plain(module.sampling),
        "training": {"grad_clip": module.grad_clip, "compile": module.compile_transformer,
                     "activation_checkpointing": module.activation_checkpointing,
                     "skip_nonfinite": module.skip_nonfinite, "parameters": module.model.num_parameters()},
    }
    if datamodule is not None:
        data = {name: getattr(datamodule, name, None) for name in (
            "train_files", "val_files", "test_files", "val_fraction", "vocab_size", "special_tokens", "roles",
            "context_length", "batch_size", "val_batch_size", "seed", "eval_stride")}
        params["data"] = {k: v for k, v in data.items() if v is not None}
    return params


class RunReport(L.Callback):
    """Sends the hyperparameters to every logger when fit starts, and again to TensorBoard with the best validation
    results when it ends (its HPARAMS tab); prints a summary when fit ends."""

    def __init__(self) -> None:
        #: (step, val/loss, val/bpb or None) of each validation of this fit.
        self.validations: list[tuple[int, float, Optional[float]]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.state.fn == "fit" and not trainer.sanity_checking and "val/loss" in metrics:
            bpb = metrics.get("val/bpb")
            self.validations.append((trainer.global_step, float(metrics["val/loss"]),
                                     None if bpb is None else float(bpb)))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = hyperparameters(pl_module, getattr(trainer, "datamodule", None))
        for logger in trainer.loggers:
            logger.log_hyperparams(params)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validations:  # TensorBoard's HPARAMS tab lists a run only with results beside its settings
            step, loss, bpb = min(self.validations, key=lambda v: v[1])
            results = {"hparams/best_val_loss": loss, **({"hparams/best_val_bpb": bpb} if bpb is not None else {})}
            params = hyperparameters(pl_module, getattr(trainer, "datamodule", None))
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.log_hyperparams(params, metrics=results)
        if trainer.is_global_zero:  # a plain print: the progress bar has closed, and a closed TQDM bar drops text
            print(fit_summary(trainer, self.validations), flush=True)


def fit_summary(trainer: L.Trainer, validations: list[tuple[int, float, Optional[float]]]) -> str:
    """A few lines: steps run, best validation loss / bpb and its checkpoint, last checkpoint, log folders."""
    lines = ["-" * 72, f"fit finished at step {trainer.global_step}"]
    if validations:
        step, loss, bpb = min(validations, key=lambda v: v[1])
        best = f"  best val/loss {loss:.4f}" + (f", val/bpb {bpb:.4f}" if bpb is not None else "") + f" at step {step}"
        checkpoint = _best_checkpoint(trainer)
        lines.append(best + (f": {checkpoint}" if checkpoint else ""))
        step, loss, bpb = validations[-1]
        lines.append(f"  last val/loss {loss:.4f}" + (f", val/bpb {bpb:.4f}" if bpb is not None else "")
                     + f" at step {step}")
    scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    if scores:  # the evals at the last validation (e.g. MultipleChoiceEval's eval/<name>/acc)
        lines.append("  last " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items())))
    last_ckpt = _last_checkpoint(trainer)
    if last_ckpt:
        lines.append(f"  last checkpoint: {last_ckpt}")
    folders = [d for d in (_log_folder(logger) for logger in trainer.loggers) if d]
    if folders:
        lines.append(f"  logs: {', '.join(folders)}")
    lines.append("-" * 72)
    return "\n".join(lines)


def _best_checkpoint(trainer: L.Trainer) -> Optional[str]:
    """The best checkpoint of the first ModelCheckpoint that monitors val/loss."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor == "val/loss" and callback.best_model_path:
            return callback.best_model_path
    return None


def _last_checkpoint(trainer: L.Trainer) -> Optional[str]:
    paths = [c.last_model_path for c in trainer.checkpoint_callbacks
             if isinstance(c, ModelCheckpoint) and c.last_model_path]
    return max(paths, key=lambda p: os.path.getmtime(p) if os.path.exists(p) else 0) if paths else None


def _log_folder(logger: Any) -> Optional[str]:
    for name in ("log_dir", "save_dir"):
        try:
            value = getattr(logger, name, None)
        except Exception:  # a logger whose folder needs a live run (W&B offline) has none to show
            value = None
        if value:
            return str(value)
    return None
