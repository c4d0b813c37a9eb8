"""The one door to Lightning's and jsonargparse's internals.

Everything in llm_lit that needs a name Lightning or jsonargparse does not promise to keep
(a leading underscore, or the wording of an error message) reaches it through a function
here, each with the reason no public API serves. Everything else uses public APIs only.
`tests/lightning/test_lightning_compat.py` exercises every function against the installed
versions, so an upgrade that renames one of these fails there, naming what to update, rather
than deep inside a resumed run. At run time a vanished name raises `LightningInternalsChanged`
with the same message.

Private names used (and the public ones that replaced earlier private uses):

* `trainer._signal_connector.received_sigterm` (set): stop at the end of the current step
  (`request_stop`); reading it uses the public `trainer.received_sigterm`.
* `trainer.fit_loop.epoch_loop._batches_that_stepped` (get/set): the step loggers write at
  (`logger_step`, `set_logger_step`).
* `trainer._logger_connector.should_update_logs`: whether this step writes logs
  (`should_update_logs`).
* `trainer.fit_loop.epoch_loop._should_check_val_fx` and `trainer.fit_loop._data_fetcher`:
  whether a validation follows the current training step (`validation_due`).
* `trainer.fit_loop.epoch_loop._num_ready_batches_reached`: whether a step ends the last epoch
  (`ends_the_run`), and ModelCheckpoint's `_last_checkpoint_saved` / `_last_global_step_saved`:
  whether it already wrote `last` at the final step (`last_saved_step`).
* the layout of the fit loop's saved progress counters (`"epoch_loop.batch_progress"`, ...):
  a checkpoint taken before a due validation is marked so a resume runs it
  (`mark_validation_started`).
* `LightningCLI._parse_ckpt_path` (overridden): LightningCLI reads the whole `--ckpt_path`
  file again after parsing, only to look for `hyper_parameters`, which llm_lit checkpoints
  never hold (`NoHyperparametersInCheckpoints`).
* `parser._subcommands_action` (jsonargparse) and `parser._actions` (argparse): the option
  names a subcommand accepts, for "did you mean" hints (`subcommand_parser`, `option_keys`);
  the same action lists llm_lit's own subcommands in `llm_lit --help` (`add_listed_subcommand`).
* the wording of jsonargparse's error messages (`unknown_key`, `reworded`).
* `RichProgressBar._get_train_description` (overridden): the training line of a run without an
  epoch limit reads "Epoch 0", not "Epoch 0/-2" (`RichTrainLine`).
* no longer used, replaced by public APIs: `LightningModule._trainer` (`attached_trainer` asks
  the `module.trainer` property), `LightningCLI._get` (the CLI reads its settings with
  `Namespace.get`) and reading `_signal_connector.received_sigterm` (`trainer.received_sigterm`).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class LightningInternalsChanged(AttributeError):
    """A private Lightning or jsonargparse name llm_lit relies on is gone: update this module."""


def _private(owner: Any, name: str, purpose: str) -> Any:
    """`getattr(owner, name)`, or `LightningInternalsChanged` naming what to update."""
    try:
        return getattr(owner, name)
    except AttributeError:
        raise LightningInternalsChanged(
            f"{type(owner).__name__}.{name} no longer exists in the installed Lightning/jsonargparse; llm_lit uses it "
            f"to {purpose}: update llm_lit/lightning_compat.py for this version.") from None


def _set_private(owner: Any, name: str, value: Any, purpose: str) -> None:
    """`setattr(owner, name, value)` for an attribute that must already exist (a typo would create a new one)."""
    _private(owner, name, purpose)
    setattr(owner, name, value)


# ---------------------------------------------------------------------- Lightning: the trainer
def attached_trainer(module: L.LightningModule) -> Optional[L.Trainer]:
    """The Trainer `module` is attached to, or None (public API: `module.trainer` raises when detached)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def request_stop(trainer: L.Trainer, stop: bool = True) -> None:
    """Make Lightning stop at the end of the current step (or not), as on SIGTERM.

    Private because Lightning only exposes the flag read-only (`trainer.received_sigterm`); its
    stop path (finish the step, raise `SIGTERMException`, let callbacks save) is what we want.
    """
    connector = _private(trainer, "_signal_connector", "stop at the end of a step after Ctrl-C or SIGTERM")
    _set_private(connector, "received_sigterm", stop, "stop at the end of a step after Ctrl-C or SIGTERM")


def logger_step(trainer: L.Trainer) -> int:
    """The step Lightning writes logs at (batches that stepped the optimizer; differs from
    `global_step` after some resumes). Private: no public accessor exists."""
    loop = trainer.fit_loop.epoch_loop
    return _private(loop, "_batches_that_stepped", "log train metrics at Lightning's own logger step")


def set_logger_step(trainer: L.Trainer, step: int) -> None:
    """Set the logger step (after resuming from an interrupt checkpoint). Private: no public setter exists."""
    _set_private(trainer.fit_loop.epoch_loop, "_batches_that_stepped", step, "restore the logger step after a resume")


def should_update_logs(trainer: L.Trainer) -> bool:
    """Whether Lightning writes logs at this step (`log_every_n_steps`, counted in optimizer steps).

    Private: Lightning's own test has no public form, and re-deriving it would drift from it.
    """
    connector = _private(trainer, "_logger_connector", "write train metrics exactly at Lightning's logging steps")
    return _private(connector, "should_update_logs", "write train metrics exactly at Lightning's logging steps")


def validation_due(trainer: L.Trainer) -> bool:
    """Whether Lightning runs a validation right after the current training step (called during the step).

    Private: Lightning's own test (`val_check_interval`, epochs, time intervals, early stops) has no
    public form, and re-deriving it would drift from it.
    """
    loop = trainer.fit_loop.epoch_loop
    check = _private(loop, "_should_check_val_fx", "run, after a resume, the validation a kill interrupted")
    return bool(check(_private(trainer.fit_loop, "_data_fetcher", "run the validation a kill interrupted")))


def ends_the_run(trainer: L.Trainer) -> bool:
    """Whether the training step that just ran (called in `on_train_batch_end`) is the run's last: it reached
    `max_steps`, or it ends the last epoch (`max_epochs`, `limit_train_batches`).

    Private: the epoch loop's own test of its last batch (`_num_ready_batches_reached`) has no public form.
    """
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return True
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    loop = trainer.fit_loop.epoch_loop
    return last_epoch and bool(_private(loop, "_num_ready_batches_reached", "validate and save at a run's last step")())


def last_saved_step(callback: Any) -> Optional[int]:
    """The global step at which a ModelCheckpoint last wrote a file in this process (None: it wrote none yet), and
    so, with `save_last`, its `last` file (it writes `last` whenever it writes at a step).

    Private: ModelCheckpoint keeps both only in private attributes.
    """
    if not _private(callback, "_last_checkpoint_saved", "save the last step of a run that ends normally"):
        return None
    return _private(callback, "_last_global_step_saved", "save the last step of a run that ends normally")


def saved_at_train_batch_end(loops: dict[str, Any]) -> bool:
    """Whether a checkpoint's loop state was saved inside `on_train_batch_end` (the batch processed, not
    yet counted as completed): Lightning's own test for its `RESTARTED_ON_TRAIN_BATCH_END` stage."""
    total = _progress(loops, "epoch_loop.batch_progress")["total"]
    return total["completed"] == total["processed"] - 1


def mark_validation_started(loops: dict[str, Any]) -> None:
    """Edit a checkpoint's loop state saved inside `on_train_batch_end`, before a due validation, to read as
    saved once that step completed and its validation started (first batch in flight, none done).

    A resume from it then runs the whole validation first, logging it at the step it belongs to
    (Lightning's `RESTARTED_MID_EVALUATION` stage), instead of skipping it as Lightning does for
    checkpoints taken at a train-batch end. Private: the layout of the saved progress counters.
    """
    train = _progress(loops, "epoch_loop.batch_progress")
    for counts in (train["total"], train["current"]):
        counts["completed"] = counts["processed"]
    val = _progress(loops, "epoch_loop.val_loop.batch_progress")
    done = val["total"]["completed"]
    val["total"].update(ready=done + 1, started=done + 1, processed=done)
    val["current"].update(ready=1, started=1, processed=0, completed=0)
    val["is_last_batch"] = False


def _progress(loops: dict[str, Any], key: str) -> dict[str, Any]:
    """The fit loop's saved progress counters under `key` (`LightningInternalsChanged` if the layout moved)."""
    progress = loops.get("fit_loop", {}).get(key)
    if not isinstance(progress, dict) or not {"total", "current"} <= set(progress):
        raise LightningInternalsChanged(f"checkpoints no longer hold loops['fit_loop'][{key!r}] with 'total' and "
                                        "'current' counters; llm_lit edits them to run, after a resume, the validation "
                                        "a kill interrupted: update llm_lit/lightning_compat.py for this version.")
    return progress


# ---------------------------------------------------------------------- Lightning: the progress bar
class RichTrainLine(RichProgressBar):
    """Lightning's Rich progress bar whose training line reads "Epoch 0" in a run without an epoch limit.

    Lightning writes `Epoch {n}/{max_epochs - 1}`, which is "Epoch 0/-2" when max_epochs is -1 (Lightning's
    "no limit": a run of steps). Private: the line comes from `_get_train_description`; no public hook sets it.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs not in (None, -1):
            return super()._get_train_description(current_epoch)
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"


# ---------------------------------------------------------------------- Lightning: the CLI
class NoHyperparametersInCheckpoints:
    """A LightningCLI mixin that keeps LightningCLI from reading `--ckpt_path` a second time.

    Right after parsing, LightningCLI loads the whole checkpoint (`_parse_ckpt_path`) only to
    apply its `hyper_parameters`; llm_lit checkpoints hold none (their model config travels in
    the `"llm_lit"` section, which `llm_lit.run.checkpoint` applies from the one read). Private:
    LightningCLI has no public switch for it.
    """

    def _parse_ckpt_path(self) -> None:
        """Nothing to apply: llm_lit checkpoints hold no `hyper_parameters`."""


# ---------------------------------------------------------------------- jsonargparse: parsers and messages
def subcommand_parser(parser: Any, subcommand: Optional[str]) -> Any:
    """The parser of `subcommand` under `parser` (`parser` itself when it has no such subcommand).

    Private: jsonargparse keeps its subcommands action unexposed; LightningCLI's own map is private too.
    """
    if subcommand is None:
        return parser
    action = _private(parser, "_subcommands_action", "suggest the nearest valid key for an unknown one")
    return action.choices.get(subcommand, parser) if action is not None else parser


def add_listed_subcommand(parser: Any, name: str, help_line: str) -> None:
    """List `name` among `parser`'s subcommands (in its --help and its invalid-choice error) with `help_line`.

    llm_lit runs these commands itself before LightningCLI parses anything, so the listed
    subcommand gets an empty parser. Private: jsonargparse hands out the subcommands action only
    from `add_subcommands()`, which may be called once, and LightningCLI has called it.
    """
    from jsonargparse import ArgumentParser

    action = _private(parser, "_subcommands_action", "list llm_lit's own subcommands in llm_lit --help")
    action.add_subcommand(name, ArgumentParser(prog=f"llm_lit {name}"), help=help_line)


def option_keys(parser: Any) -> list[str]:
    """Every dotted option key `parser` accepts (`--model.config.d_model` -> `model.config.d_model`).

    Private: argparse lists its actions only in `_actions`.
    """
    actions = _private(parser, "_actions", "suggest the nearest valid key for an unknown one")
    return [option[2:] for action in actions for option in action.option_strings if option.startswith("--")]


# The wording of jsonargparse's "unknown key" errors; the first three are what the installed
# version says, the last two are kept for other versions.
_UNKNOWN_KEY_PATTERNS = [
    re.compile(r"unrecognized arguments: --?([\w.\-]+)"),
    re.compile(r"Group '([\w.]+)' does not accept option '([\w.]+)'"),
    re.compile(r"does not accept option '([\w.]+)'"),
    re.compile(r"[Kk]ey ['\"]([\w.]+)['\"] is not expected"),
    re.compile(r"No action for key \"([\w.]+)\""),
]


def unknown_key(message: str) -> Optional[str]:
    """The dotted key a jsonargparse error message calls unknown, or None when it says something else."""
    for pattern in _UNKNOWN_KEY_PATTERNS:
        match = pattern.search(message)
        if match:
            return ".".join(match.groups())
    return None


def class_path_named(message: str) -> Optional[str]:
    """The class a jsonargparse instantiation error names (`... class_path 'a.b.C' ...`), or None."""
    match = re.search(r"class_path '([\w.]+)'", message)
    return match.group(1) if match else None


def reworded(message: str) -> str:
    """A jsonargparse value error in our words: `Parser key "a.b": ...` -> `Invalid value for a.b: ...`."""
    return message.replace('Parser key "', "Invalid value for ").replace('":', ":")
