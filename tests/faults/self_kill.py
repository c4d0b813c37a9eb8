"""A callback for the kill-and-resume tests: the run signals itself at an exact point, so a test
can stop it just after a given checkpoint (and before that step's validation), every time.

    llm_lit fit ... --trainer.callbacks+=self_kill.SignalAt --trainer.callbacks.step 10 \
        --trainer.callbacks.hook validation_start --trainer.callbacks.signal_name SIGKILL

(`tests/faults` must be on the subprocess's PYTHONPATH: `fault_helpers.faults_env`.)
"""

from __future__ import annotations

import os
import signal
from typing import Any, Literal

import lightning as L

from llm_lit.run.checkpoint_io import AtomicCheckpointIO


class SignalAt(L.Callback):
    """Sends `signal_name` to this process when optimizer step `step` is about to start (`train_batch_start`:
    every checkpoint of the steps before it is written) or when the validation after step `step` starts
    (`validation_start`: the step's own checkpoints are written, its validation has not run).

    Args:
        step: The global step (optimizer steps done) at which to signal.
        hook: Where: 'train_batch_start' or 'validation_start'.
        signal_name: 'SIGKILL', 'SIGTERM' or 'SIGINT'.
        repeat: How many times to send it (2 SIGINTs: Ctrl-C pressed twice).
    """

    def __init__(self, step: int, hook: Literal["train_batch_start", "validation_start"] = "train_batch_start",
                 signal_name: Literal["SIGKILL", "SIGTERM", "SIGINT"] = "SIGKILL", repeat: int = 1) -> None:
        self.step, self.hook, self.signum, self.repeat = step, hook, signal.Signals[signal_name], repeat
        self._sent = False

    def _maybe_signal(self, trainer: L.Trainer, hook: str) -> None:
        if hook == self.hook and trainer.global_step == self.step and not self._sent:
            self._sent = True
            for _ in range(self.repeat):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._maybe_signal(trainer, "train_batch_start")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._maybe_signal(trainer, "validation_start")


class KillAfterSave(AtomicCheckpointIO):
    """llm_lit's checkpoint IO that SIGKILLs this process right after it has written the checkpoint of global step
    `step`: the moment between a checkpoint and the rest of its step (Lightning's own log writes included).

        llm_lit fit ... --trainer.plugins self_kill.KillAfterSave --trainer.plugins.step 15
    """

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        if checkpoint.get("global_step") == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtBatch(L.Callback):
    """Sends `signal_name` to this process when batch `batch` of `validate`, `test` or `predict` starts (so a test
    stops those commands at an exact point).

        llm_lit predict ... --trainer.callbacks+=self_kill.SignalAtBatch --trainer.callbacks.batch 2

    Args:
        batch: The index of the batch at whose start to signal.
        signal_name: 'SIGKILL', 'SIGTERM' or 'SIGINT'.
    """

    def __init__(self, batch: int, signal_name: Literal["SIGKILL", "SIGTERM", "SIGINT"] = "SIGTERM") -> None:
        self.batch, self.signum = batch, signal.Signals[signal_name]

    def _maybe_signal(self, batch_idx: int) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._maybe_signal(batch_idx)

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._maybe_signal(batch_idx)

    def on_predict_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        self._maybe_signal(batch_idx)


class SignalDuringSave(AtomicCheckpointIO):
    """llm_lit's checkpoint IO that sends `signal_name` to this process while it writes a checkpoint taken on an
    interrupt (Ctrl-C pressed again while that checkpoint is being saved).

        llm_lit fit ... --trainer.plugins self_kill.SignalDuringSave
    """

    def __init__(self, signal_name: Literal["SIGTERM", "SIGINT"] = "SIGINT") -> None:
        super().__init__()
        self.signum = signal.Signals[signal_name]

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "llm_lit_interrupt" in checkpoint:
            os.kill(os.getpid(), self.signum)
        super().save_checkpoint(checkpoint, path, storage_options)
