"""What Ctrl-C (SIGINT) and SIGTERM do, in every command.

* During `fit`'s training loop (`InterruptCheckpoint`): the first signal lets the current optimizer
  step (and a running validation) finish, then `last.ckpt` is written and the run exits 130 / 143;
  a second Ctrl-C aborts at once, without a checkpoint (also while that checkpoint is being written:
  the previous file stays).
* Everywhere else (`stop_on_signals`, installed by the CLI for the whole process: `fit`'s data step
  and checks, `validate`, `test`, `predict`, `export`, `import`, ...): the signal stops the command at
  once by raising `Interrupted`, so nothing half-written is kept (every file is written under a
  temporary name); the command says what it had finished and exits 130 / 143 (`run_until_signal`).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from llm_lit.errors import Interrupted
from llm_lit.training.lightning_compat import logger_step, request_stop, set_logger_step
from llm_lit.training.resume import last_checkpoint_path

INTERRUPT_KEY = "llm_lit_interrupt"
#: The signals a command stops on.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SecondInterrupt(Interrupted):
    """A second Ctrl-C during `fit`: stop at once, without a checkpoint (the state may be mid-update)."""

    def __init__(self) -> None:
        super().__init__(signal.SIGINT)

    def message(self) -> str:
        return "Aborted by a second Ctrl-C; no checkpoint written (the previous last.ckpt, if any, is intact)."


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> dict[int, Any]:
    """Make `signals` raise `Interrupted` at once in this process (main thread only; elsewhere nothing changes);
    returns the handlers they had."""
    return {signum: _install(signum, _raise_interrupted) for signum in signals}


def run_until_signal(command: Callable[[], Any], signals: tuple[int, ...] = STOP_SIGNALS) -> int:
    """Run `command()` stopping on `signals` (see `stop_on_signals`); its exit code (0 for None), or on a signal
    128 + its number, after one line on stderr saying what had been finished. The handlers are put back after."""
    previous = stop_on_signals(signals)
    try:
        return command() or 0
    except Interrupted as e:
        print(e.message(), file=sys.stderr, flush=True)
        return e.exit_code
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                _install(signum, handler)


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM during fit: finish the optimizer step, write `last.ckpt`, exit (130 / 143).

    The signal handler only records the signal. At the end of each optimizer step the ranks agree
    whether any was signalled; if so Lightning's own stop-at-step-boundary flag is raised on all of
    them, a running validation is allowed to finish, and the checkpoint is written where
    `--ckpt_path last` finds it (the `last.ckpt` of the first checkpoint callback that keeps one). A
    second Ctrl-C raises `SecondInterrupt` at once (no checkpoint: the state may be mid-update; the
    previous `last.ckpt` stays), also while the checkpoint is being written (its temporary file is
    discarded); once it is written, further signals are ignored while the run exits. The CLI turns
    `SecondInterrupt` into exit code 130, as for any Ctrl-C.

    With one process the run stops at the end of the step in which the signal came. With several,
    each step's end starts a small all-reduce of the flags (the maximum signal number) and reads the
    one started a step earlier, so no rank waits on it (waiting each step cost a few percent of a CPU
    step): the ranks stop one step after the signal, all at the same step.

    Outside the training loop (the data step, a sanity check, `validate`, `test`) the CLI's
    `stop_on_signals` handler stops at once; this callback then says what had been finished.
    """

    def __init__(self) -> None:
        self.signal_received: Optional[int] = None
        self.saved_path: Optional[Path] = None
        self._previous_handlers: dict[int, Any] = {}
        self._held_back = False
        self._saving = False
        self._saved = False
        self._training = False
        self._logger_step: Optional[int] = None
        self._pending: Optional[tuple[torch.Tensor, Any]] = None  # the ranks' flags being all-reduced, and its work

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal_received, self.saved_path, self._saved, self._training = None, None, False, True
        self._pending = None
        # Replaces Lightning's SIGTERM handler (installed just before this hook), whose collective inside
        # the handler can deadlock DDP ranks that each receive the signal; ranks agree at the next step
        # boundary instead. Lightning restores the original handlers when fit ends.
        handler = self._on_signal()
        self._previous_handlers = {s: _install(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self) -> Callable:
        def handler(signum: int, frame: Any) -> None:
            if self._saved:
                return  # the checkpoint is written and the run is ending
            if self.signal_received is not None and signum == signal.SIGINT:
                raise SecondInterrupt
            if self.signal_received is None:
                self.signal_received = signum
                print(f"\n{signal.Signals(signum).name}: finishing the step, then saving a checkpoint"
                      + (" (Ctrl-C again to abort now)." if signum == signal.SIGINT else "."), flush=True)
        return handler

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """At each optimizer-step boundary, stop (all ranks together) if any rank was signalled."""
        if (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        stop = self.signal_received is not None if trainer.world_size == 1 else self._agreed(pl_module.device)
        if stop:
            request_stop(trainer)  # Lightning stops at the end of this step

    def _agreed(self, device: torch.device) -> bool:
        """Under DDP: whether any rank had been signalled by the end of the previous step (the same answer on
        every rank); starts the all-reduce of this step's flags unless the ranks are stopping now."""
        signalled = self._wait_pending()
        if signalled:
            self.signal_received = self.signal_received or signalled
            return True
        flag = torch.tensor([self.signal_received or 0], dtype=torch.int32, device=device)
        work = torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, async_op=True)
        self._pending = (flag, work)
        return False

    def _wait_pending(self) -> int:
        """The result of the all-reduce in flight (the largest signal number, 0 for none); 0 if none is."""
        if self._pending is None:
            return 0
        flag, work = self._pending
        self._pending = None
        work.wait()
        return int(flag.item())

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

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._wait_pending()  # every rank started it at the same last step: finish it before the next collective
        self._training = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, Interrupted) and not exception.done:
            exception.done = self._finished(trainer, exception)
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            self._restore()
            return
        self._wait_pending()
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
        self._saved = True  # from here on a signal is ignored (Lightning puts the earlier handlers back on its way out)
        self.saved_path = path
        if trainer.is_global_zero:
            print(f"Stopped at step {trainer.global_step}; saved {path}; continue with --ckpt_path last.", flush=True)

    def _finished(self, trainer: L.Trainer, exception: Interrupted) -> str:
        """What a command stopped at once by a signal had finished, for its last line."""
        fn = getattr(trainer.state.fn, "value", trainer.state.fn)  # 'fit', 'validate', ...
        if fn == "fit" and not self._training:
            return "before training started, so nothing was trained or saved (nothing half-written is kept)."
        if fn in ("validate", "test"):
            loop = trainer.validate_loop if fn == "validate" else trainer.test_loop
            total = trainer.num_val_batches if fn == "validate" else trainer.num_test_batches
            total = sum(total) if isinstance(total, list) else total
            done = loop.batch_progress.total.completed
            of = f" of {int(total)}" if total not in (None, float("inf")) else ""
            return f"{fn} had scored {done}{of} batches; no metrics were reported (they need every batch)."
        return ""

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


def _install(signum: int, handler: Any) -> Any:
    """Set a signal handler from the main thread (elsewhere Python forbids it); returns the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signum)
    signal.signal(signum, handler)
    return previous


