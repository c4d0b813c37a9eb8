"""What a resume needs from the training loop: the validation a kill skipped, and where `last.ckpt` is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from llm_lit.training.lightning_compat import mark_validation_started, saved_at_train_batch_end, validation_due
from llm_lit.training.run_end import keeps_last


class ValidationAfterResume(L.Callback):
    """Makes a resume run the validation of the checkpointed step when a kill came before it ran.

    Checkpoints taken every N steps are written at the end of the step (`on_train_batch_end`), before
    a validation due at that step; Lightning resumes such a checkpoint after the validation, so a
    SIGKILL in between would lose that step's val/loss and the best checkpoint it would have
    written. Such a checkpoint records instead that the validation had started and no batch of it
    had finished: Lightning then runs it first on resume, at the step it belongs to.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        loops = checkpoint.get("loops")
        if (loops and trainer.state.fn == "fit" and trainer.training and saved_at_train_batch_end(loops)
                and validation_due(trainer)):
            mark_validation_started(loops)


def last_checkpoint(trainer: L.Trainer) -> Optional[Path]:
    """The run's `last.ckpt` when one has been written (where `--ckpt_path last` resumes from), else None."""
    path = last_checkpoint_path(trainer)
    return path if path is not None and path.is_file() else None


def last_checkpoint_path(trainer: L.Trainer) -> Optional[Path]:
    """Where `--ckpt_path last` looks: `last.ckpt` of the first ModelCheckpoint with `save_last` (None if none)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and keeps_last(callback) and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return None
