"""Exact resume: atomic checkpoint files, restorable randomness, and checkpoints on interrupts.

* `AtomicCheckpointIO` writes every checkpoint, with its checksums, under a temporary name and
  renames it, so a run killed mid-write leaves the previous `last.ckpt` (or none), never half of
  one; it loads with `weights_only=True`, verifying the checksums (handing over the copy the CLI
  already read and verified, when the file is unchanged) and turns unreadable or corrupt files
  and full disks into one-line `UserError`s.
* Training randomness (dropout) needs no saved state: before each training micro-batch
  torch's generator is reseeded from a hash of `(seed, micro-batch index, rank)` -- the same
  idea as the data windows -- so a resumed run draws the same masks as the uninterrupted one.
  The global python/numpy/torch RNG states are saved in checkpoints and restored too, for
  anything else that draws from them.
* `InterruptCheckpoint`: the first Ctrl-C (SIGINT) or SIGTERM lets the current optimizer step
  finish, then writes `last.ckpt` and exits (code 130 / 143); a second Ctrl-C aborts at once.
* `ValidationAfterResume`: a checkpoint written at the end of a training step whose validation
  has not run yet is marked so; a run resumed from it (after a SIGKILL in between) runs that
  validation first, as the uninterrupted run did.
"""

from __future__ import annotations

import errno
import os
import random
import signal
from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from llm_lit.checkpoint import LoadedCheckpoint, read_checkpoint, save_checkpoint_file
from llm_lit.errors import UserError
from llm_lit.hashing import splitmix64
from llm_lit.lightning_compat import (logger_step, mark_validation_started, request_stop, saved_at_train_batch_end,
                                      set_logger_step, validation_due)

RNG_KEY = "llm_lit_rng"
INTERRUPT_KEY = "llm_lit_interrupt"


# ---------------------------------------------------------------------- atomic checkpoint files
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, writing atomically and loading with `weights_only=True`.

    Args:
        preloaded: A checkpoint already read (by the CLI, for `--ckpt_path FILE`); loading that
            same, unchanged file returns it instead of reading the file a second time.
    """

    def __init__(self, preloaded: Optional[LoadedCheckpoint] = None) -> None:
        super().__init__()
        self.preloaded = preloaded

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Optional[Any] = None) -> None:
        """Write `checkpoint` with its checksums to `path` via a temporary file renamed on success (the old
        file survives failures)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options.")
        try:
            save_checkpoint_file(checkpoint, path)
        except OSError as e:
            raise UserError(write_failure_message(path, e, "checkpoint", "the checkpoint callback's dirpath")) from e

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """The checkpoint at `path`, loaded with `weights_only=True`; `UserError` if missing, truncated or corrupt."""
        contents = self.preloaded.take(path) if self.preloaded is not None else None
        return contents if contents is not None else read_checkpoint(path, mmap=False)


def remove_stale_temporary_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of checkpoint writes a killed run left in `folder` (`.last.ckpt.*.tmp`);
    call it only while holding the folder's run lock, when no write can be under way. Returns them."""
    stale = sorted(Path(folder).glob(".*.ckpt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_failure_message(path: str | os.PathLike, error: OSError, what: str, setting: str) -> str:
    """One sentence for a failed write: which file, why (full disk, no permission, ...) and the fix."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        fix = f"free some space (the previous {what} is intact) or point {setting} at another disk"
    else:
        fix = f"make its folder writable or point {setting} at a writable folder"
    return f"Cannot write the {what} '{path}' ({reason}); {fix}."


# ---------------------------------------------------------------------- randomness
def micro_batch_seed(seed: int, micro_batch: int, rank: int) -> int:
    """The torch seed of training micro-batch `micro_batch` on `rank`: a hash of the three (63-bit)."""
    mixed = splitmix64(np.asarray([seed], dtype=np.uint64)) ^ np.uint64(micro_batch)
    mixed = splitmix64(splitmix64(mixed) ^ np.uint64(rank))
    return int(mixed[0] >> np.uint64(1))


def rng_states() -> dict[str, Any]:
    """The global RNG states (python, numpy, torch CPU and CUDA) as tensors and plain data (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states saved by `rng_states` (those present)."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        n = states["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------------- interrupts
class SecondInterrupt(BaseException):
    """A second Ctrl-C: stop at once, without a checkpoint.

    Not a `KeyboardInterrupt`, which Lightning turns into exit code 1; like one, no `except Exception`
    catches it on the way out.
    """

class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM during fit: finish the optimizer step, write `last.ckpt`, exit (130 / 143).

    The signal handler only records the signal. At the end of each optimizer step the ranks agree
    (one small all-reduce under DDP) whether any was signalled; if so Lightning's own
    stop-at-step-boundary flag is raised on all of them, a running validation is allowed to finish,
    and the checkpoint is written where `--ckpt_path last` finds it (the `last.ckpt` of the first
    checkpoint callback that keeps one). A second Ctrl-C raises `SecondInterrupt` at once (no
    checkpoint: the state may be mid-update; the previous `last.ckpt` stays), which the CLI turns
    into exit code 130, as for any Ctrl-C.
    """

    def __init__(self) -> None:
        self.signal_received: Optional[int] = None
        self.saved_path: Optional[Path] = None
        self._previous_handlers: dict[int, Any] = {}
        self._held_back = False
        self._saving = False
        self._logger_step: Optional[int] = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal_received, self.saved_path = None, None
        # Replaces Lightning's SIGTERM handler (installed just before this hook), whose collective inside
        # the handler can deadlock DDP ranks that each receive the signal; ranks agree at the next step
        # boundary instead. Lightning restores the original handlers when fit ends.
        handler = self._on_signal()
        self._previous_handlers = {s: _install(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self) -> Callable:
        def handler(signum: int, frame: Any) -> None:
            if self.signal_received is not None and signum == signal.SIGINT:
                raise SecondInterrupt
            if self.signal_received is None:
                self.signal_received = signum
                print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint"
                      + (" (Ctrl-C again to abort now)." if signum == signal.SIGINT else "."), flush=True)
        return handler

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """At each optimizer-step boundary, stop (all ranks together) if any rank was signalled."""
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        stop = self.signal_received is not None
        if trainer.world_size > 1:
            flag = torch.tensor([self.signal_received or 0], device=pl_module.device)
            flag = trainer.strategy.reduce(flag, reduce_op="max")
            stop = int(flag.item()) > 0
            if stop and self.signal_received is None:
                self.signal_received = int(flag.item())
        if stop:
            request_stop(trainer)  # Lightning stops at the end of this step

    # Lightning aborts a validation run midway on SIGTERM, which a resumed run would not repeat (its
    # val/loss would be lost): hold the stop request back until the validation run has finished.
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.state.fn == "fit" and trainer.received_sigterm:
            self._held_back = True
            request_stop(trainer, False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._held_back:
            self._held_back = False
            request_stop(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        # The exit code tells a scheduler (or a shell) which signal stopped the run.
        exception.code = 128 + (self.signal_received or signal.SIGTERM)
        path = last_checkpoint_path(trainer)
        if path is None:
            if trainer.is_global_zero:
                print(f"Stopped at step {trainer.global_step}; no checkpoint written (checkpointing is off).", flush=True)
            return
        self._saving = True
        try:
            # A full checkpoint (optimizer, loops, callbacks) is what resuming needs; saying so explicitly
            # also keeps Lightning from logging "`weights_only` was not set, defaulting to `False`".
            trainer.save_checkpoint(path, weights_only=False)
        finally:
            self._saving = False
        self.saved_path = path
        if trainer.is_global_zero:
            print(f"Stopped at step {trainer.global_step}; saved {path}; continue with --ckpt_path last.", flush=True)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._saving:
            # Taken between steps, unlike the checkpoints Lightning takes during a step, whose resume
            # logic may then shift the logger's step counter: remember the right value.
            checkpoint[INTERRUPT_KEY] = {"logger_step": logger_step(trainer)}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._logger_step = checkpoint.get(INTERRUPT_KEY, {}).get("logger_step")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._logger_step is not None:  # first step after resuming from an interrupt checkpoint
            set_logger_step(trainer, self._logger_step)
            self._logger_step = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous_handlers.items():
            if previous is not None:
                _install(signum, previous)
        self._previous_handlers = {}


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


def _install(signum: int, handler: Any) -> Any:
    """Set a signal handler from the main thread (elsewhere Python forbids it); returns the previous one."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signum)
    signal.signal(signum, handler)
    return previous


def last_checkpoint(trainer: L.Trainer) -> Optional[Path]:
    """The run's `last.ckpt` when one has been written (where `--ckpt_path last` resumes from), else None."""
    path = last_checkpoint_path(trainer)
    return path if path is not None and path.is_file() else None


def last_checkpoint_path(trainer: L.Trainer) -> Optional[Path]:
    """Where `--ckpt_path last` looks: `last.ckpt` of the first ModelCheckpoint with `save_last` (None if none)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return None
