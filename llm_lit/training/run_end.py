"""The end of a run that ends normally (by `max_steps`, by epochs, by a time budget): it validates at its
last step, and its `last.ckpt` holds that step, written when everything else of the run is done.

Lightning validates every `val_check_interval` steps and ModelCheckpoint writes `last` only when it
writes another checkpoint at the same step (a new best, or its `every_n_train_steps`), so a run
whose last step falls between them would end unvalidated, its `last.ckpt` some steps behind the
weights it trained: `predict`, `export` and `init_from` would then use stale weights.

And a `last.ckpt` of the last step written before that step's validation (a checkpoint every N
steps is written at the end of its step) would be a trap: a run resumed from it has reached its
`max_steps`, so Lightning ends it at once, without the validation and the best checkpoint a kill
had cut off. So at the last step no `last` file is written until training ends; a kill before
then resumes from the previous one and runs the last steps and the validation again.
"""

from __future__ import annotations

import weakref
from typing import Any, Union

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from llm_lit.training.lightning_compat import ends_the_run, last_saved_step

#: The `save_last` setting of each checkpoint callback whose `last` file a `RunEnd` holds off.
_HELD: "weakref.WeakKeyDictionary[ModelCheckpoint, Union[bool, str]]" = weakref.WeakKeyDictionary()


def keeps_last(callback: ModelCheckpoint) -> bool:
    """Whether `callback` keeps a `last` file: its `save_last`, also while `RunEnd` holds it off at a run's last
    step (an interrupt checkpoint taken then is still written where `--ckpt_path last` looks)."""
    return bool(callback.save_last or _HELD.get(callback))


class RunEnd(L.Callback):
    """Validates at the last step of a run and leaves `last.ckpt` holding it, written last of all.

    * At the end of the step that ends the run, Lightning is asked to stop there (`trainer.should_stop`),
      which makes it validate at that step, as it does for an early stop; the checkpoint callbacks then
      save what that validation earns (a new best). A time budget's stop (`TimeBudget` raises
      `should_stop` itself, earlier in the same hook) ends the same way.
    * From then on the checkpoint callbacks write no `last` file (their `save_last` is held off; this
      callback's hooks run before theirs); when training ends, this callback writes each of their
      `last` files, as a full checkpoint, and gives `save_last` back.
    * A `last` file that no checkpoint callback wrote at the final step (and none will write as training
      ends) is written then too.
    """

    def __init__(self) -> None:
        self._held: list[ModelCheckpoint] = []  # the callbacks whose save_last this callback holds off (see _HELD)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._release()  # a stop that did not end the run (min_steps not reached): training goes on

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if ends_the_run(trainer):
            trainer.should_stop = True  # Lightning validates now (when validation is on) and then ends fit
        if trainer.should_stop and not self._held:
            self._held = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last]
            for callback in self._held:
                _HELD[callback], callback.save_last = callback.save_last, False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._release()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        held = self._held
        self._release()
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        metrics = dict(trainer.callback_metrics)
        paths = self._stale_last_files(trainer, metrics, exclude=held)
        for callback in held:
            if callback.dirpath:
                # as ModelCheckpoint does before it writes `last`: the path is part of the callback's saved state
                callback.last_model_path = callback.format_checkpoint_name(metrics, callback.CHECKPOINT_NAME_LAST)
                paths.add(callback.last_model_path)
        for path in sorted(paths):
            trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint; saying so keeps Lightning quiet

    def _release(self) -> None:
        """Give the held callbacks their `save_last` back."""
        for callback in self._held:
            callback.save_last = _HELD.pop(callback)
        self._held = []

    @staticmethod
    def _stale_last_files(trainer: L.Trainer, metrics: dict[str, Any], exclude: list[ModelCheckpoint]) -> set[str]:
        """The `last` files of callbacks not in `exclude` that no checkpoint callback wrote at this step or will
        write as training ends."""
        callbacks = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last
                     and c.dirpath and c not in exclude]
        by_path: dict[str, list[ModelCheckpoint]] = {}
        for callback in callbacks:
            path = callback.format_checkpoint_name(metrics, callback.CHECKPOINT_NAME_LAST)
            by_path.setdefault(path, []).append(callback)
        stale = set()
        for path, writers in by_path.items():
            steps = [last_saved_step(c) for c in writers]
            # a callback that wrote nothing yet writes `last` in its own on_train_end (Lightning's rule)
            if not any(step is None or step == trainer.global_step for step in steps):
                stale.add(path)
        return stale
