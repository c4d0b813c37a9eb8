"""The LightningCLI of `llm_lit fit|validate|test|predict` over `LanguageModel` and `TextDataModule`.

Loaded only when one of these commands runs (`llm_lit.commands.cli` dispatches): it imports torch and
Lightning, which take seconds, so `llm_lit --help` and the other commands do without it.

Added on top of standard LightningCLI: `data.vocab_size` flows into `model.config.vocab_size` and
`model.config.context_length` into `data.context_length`; a checkpoint given to validate/test/predict supplies
the model config and tokenizer itself (the file is read once, see `llm_lit.run.checkpoint`); checkpoints load
with `weights_only=True`; every run's files go to `--out_dir/--run_name/version_N/` (see `llm_lit.run.folders`);
and every user error is one line (`UserError`).
"""

from __future__ import annotations

import sys
from argparse import ArgumentError
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from llm_lit.commands.command_list import EXTRA_COMMANDS, LIGHTNING_COMMANDS
from llm_lit.commands.parsing import check_config_sections, config_files, missing_package_message, unknown_key_message
from llm_lit.data import TextDataModule
from llm_lit.errors import UserError, one_line
from llm_lit.run.checkpoint_io import AtomicCheckpointIO, remove_stale_temporary_checkpoints
from llm_lit.run.folders import (LeaveNoTrace, SaveConfigOfFit, add_run_arguments, place_checkpoints, place_logger_files,
                                 prediction_path, trainer_placement)
from llm_lit.run.interrupts import InterruptCheckpoint
from llm_lit.run.lock import RunLock
from llm_lit.run.placement import cpu_ddp_strategy
from llm_lit.run.plan import DEFAULT_MAX_STEPS, RunPlan, plan_run, read_inputs
from llm_lit.run.writable import check_writable_dir, check_writable_file
from llm_lit.training.budget import TimeBudget
from llm_lit.training.callbacks import PredictionWriter
from llm_lit.training.guards import check_devices, check_strategy
from llm_lit.training.lightning_compat import (
    NoHyperparametersInCheckpoints,
    add_listed_subcommand,
    option_keys,
    reworded,
    subcommand_parser,
    unknown_key,
)
from llm_lit.training.module import LanguageModel
from llm_lit.training.precision import default_precision
from llm_lit.training.progress import run_progress_bar


#: Trainer settings that differ from Lightning's defaults (configs and flags override them). The checkpoint
#: callbacks have no dirpath: they write into the run's version folder (`llm_lit.run.folders`).
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": DEFAULT_MAX_STEPS,  # with trainer.max_epochs and no max_steps given, no cap (see llm_lit.run.plan)
    "val_check_interval": 250,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 10,
    "callbacks": [
        {   # best by validation loss, plus last.ckpt at every validation
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"filename": "best-step{step}", "monitor": "val/loss",
                          "mode": "min", "save_top_k": 1, "save_last": True, "auto_insert_metric_name": False,
                          "enable_version_counter": False},
        },
        {   # last.ckpt refreshed every N optimizer steps between validations too
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"every_n_train_steps": 100, "save_top_k": 0, "save_last": True,
                          "enable_version_counter": False},
        },
    ],
}


class LLMLitCLI(NoHyperparametersInCheckpoints, LightningCLI):
    """LightningCLI with llm_lit's argument links, defaults, checkpoint handling and one-line errors."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True) -> None:
        #: What this command does, planned once right after parsing (`llm_lit.run.plan`); the hooks carry it out.
        self.plan: Optional[RunPlan] = None
        #: The locks of the checkpoint folders fit writes into (released when this object goes).
        self.run_locks: list[RunLock] = []
        # allow_abbrev=False: argparse would otherwise take `--trainer.max_st` for `--trainer.max_steps`
        # (a YAML file's keys are never abbreviated, so neither are flags).
        strict = {"exit_on_error": False, "allow_abbrev": False}
        # each command's description is llm_lit's whole sentence, not the first line of the Trainer method's docstring
        own = {name: {**strict, "description": LIGHTNING_COMMANDS[name]} for name in self.subcommands()}
        parser_kwargs = {**strict, "prog": "llm_lit", **own}
        super().__init__(LanguageModel, TextDataModule, subclass_mode_model=False, subclass_mode_data=False,
                         auto_configure_optimizers=False, parser_kwargs=parser_kwargs,
                         save_config_callback=SaveConfigOfFit, save_config_kwargs={"overwrite": True},
                         seed_everything_default=1337, args=args, run=run)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        """LightningCLI's parser, with llm_lit's own subcommands listed in `llm_lit --help` too."""
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if add_subcommands:
            for name, (_, help_line) in EXTRA_COMMANDS.items():
                add_listed_subcommand(self.parser, name, help_line)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link data and model settings so each has one source of truth; set llm_lit's trainer defaults."""
        parser.link_arguments("data.vocab_size", "model.config.vocab_size", apply_on="instantiate")
        parser.link_arguments("model.config.context_length", "data.context_length", apply_on="parse")
        parser.set_defaults({f"trainer.{k}": v for k, v in TRAINER_DEFAULTS.items()})
        parser.add_argument("--torch_threads", type=Optional[int], default=None,
                            help="CPU threads for torch's kernels (default: torch's choice, one per core). "
                                 "1 is often fastest for small models on a shared, busy CPU.")
        parser.add_argument("--time_budget", type=Optional[float], default=None,
                            help="fit only: wall-clock seconds for the whole run, counted from the process start "
                                 "(tokenizer training and encoding included; a resumed run adds what its earlier "
                                 "processes used). The run stops itself in time to validate and save, and the "
                                 "learning-rate schedule lasts as many steps as fit (trainer.max_steps becomes a "
                                 "cap). Not reproducible step for step; default: none, the run lasts max_steps.")
        add_run_arguments(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse (jsonargparse errors become one-line `UserError`s), plan the run once (`llm_lit.run.plan`), and
        apply to the config what the plan changes: the run length, `--ckpt_path` with `last` resolved, and the
        architecture and vocabulary of the checkpoint or init_from weights (re-parsed, so the links follow)."""
        argv = args if isinstance(args, list) else sys.argv[1:]
        named = _subcommand_of(args)  # a config section set to a non-mapping would silently reset it: refuse first
        check_config_sections(config_files(argv), subcommand_parser(parser, named).get_defaults(), named)
        with _one_line_errors(parser, args):
            super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        given = subcommand != "fit" or _max_steps_given(parser, args, subcommand, config.trainer.max_steps)
        self.plan = plan_run(subcommand, config.as_dict(), read_inputs(subcommand, config), max_steps_given=given)
        if self.plan.length is not None:
            config.trainer.max_steps = self.plan.length.max_steps
        if self.plan.version is not None:
            place_logger_files(config.trainer, self.plan.version)
        if not subcommand:  # LLMLitCLI(run=False): the Trainer is built as for fit
            return
        if config.get("weights_only") is None and "weights_only" in config:
            config.weights_only = True  # never unpickle arbitrary objects from a checkpoint
        config.ckpt_path = self.plan.resume
        if self.plan.settings:
            with _one_line_errors(parser, args):
                self.config = parser.parse_object({subcommand: dict(self.plan.settings)}, self.config)

    @property
    def version(self) -> Optional[Path]:
        """The version folder a fit writes to (None for validate, test and predict)."""
        return self.plan.version if self.plan is not None else None

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does; a class whose package is missing (e.g. WandbLogger without
        wandb) is one line naming what to install."""
        try:
            super().instantiate_classes()
        except (ValueError, ImportError) as e:
            message = missing_package_message(e)
            if message is None:
                raise
            raise UserError(message) from None

    def before_instantiate_classes(self) -> None:
        """Apply `torch_threads` before any tensor work (one thread per process when a CPU fit runs one process
        per core and `torch_threads` is unset)."""
        threads = self._setting(self.config, "torch_threads") or (1 if self.plan.placement else None)
        if threads:
            torch.set_num_threads(threads)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with atomic checkpoint files and checkpoint-on-interrupt; device errors in one line."""
        config = self._setting(self.config_init, "trainer", default={})
        check_devices(config.get("accelerator"), config.get("devices"))
        check_strategy(config.get("strategy"), config.get("accelerator"))
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO(preloaded=self.plan.checkpoint))
        if config.get("precision") is None:
            kwargs["precision"] = default_precision(config.get("accelerator"))
        kwargs.update(trainer_placement(self.plan.version, self.plan.resume, config))
        if self.plan.placement:
            kwargs.update(self.plan.placement, strategy=cpu_ddp_strategy())
            rank_zero_info(f"Training on {kwargs['devices']} CPU cores as {kwargs['devices']} data-parallel processes of "
                           "one thread each (pass --trainer.devices 1 for a single process).")
        callbacks = config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, run_progress_bar()]
        try:
            trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        except MisconfigurationException as e:
            first = str(e).strip().splitlines()[0].rstrip(".")
            raise UserError(f"Invalid trainer settings: {first}; fix the --trainer values.") from e
        trainer.callbacks.append(InterruptCheckpoint())
        if self.plan.time_budget is not None:
            trainer.callbacks.append(TimeBudget(self.plan.time_budget))
        if self.version is not None:
            place_checkpoints(trainer, self.version)
            for callback in trainer.callbacks:
                if isinstance(callback, SaveConfigOfFit):
                    callback.version = self.version  # config.yaml in the version, whichever logger the run has
            if self.subcommand == "fit":  # a fit refused after its logger was set up leaves nothing behind
                trainer.callbacks.append(LeaveNoTrace(self.version))
        return trainer

    def after_instantiate_classes(self) -> None:
        """Carry out the rest of the plan: the model starts from the init_from weights, the DataModule takes the
        planned tokenizer (init_from's, or the checkpoint's for validate, test and predict) in memory, and serves
        epochs in an epoch run."""
        plan = self.plan
        if plan.initial_weights is not None:
            self.model.start_from(plan.initial_weights)
        if plan.tokenizer is not None:
            self.datamodule.use_tokenizer(plan.tokenizer)
        if plan.length is not None:
            self.datamodule.train_in_epochs(plan.length.in_epochs)

    def _setting(self, config: Any, key: str, default: Any = None) -> Any:
        """`key` of the running subcommand's part of `config` (all of `config` when there is no subcommand)."""
        return config.get(str(self.subcommand), config).get(key, default)

    def before_fit(self) -> None:
        """Check every setting, and that checkpoints and logs can be written, before any data or training time
        is spent; hold the checkpoint folders' locks (one fit per folder)."""
        self.model.check_fit_settings(self.trainer, self.plan.length.known_steps)
        folders = {Path(c.dirpath) for c in self.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath}
        for folder in sorted(folders):
            check_writable_dir(folder, "checkpoint", "--out_dir (or the checkpoint callback's dirpath)")
        if self.trainer.is_global_zero:  # one lock per folder for the whole job; held until this process ends
            for held in sorted({self._locked_folder(folder) for folder in folders}):
                self.run_locks.append(RunLock.acquire(held))
            for folder in folders:
                remove_stale_temporary_checkpoints(folder)
        for logger in self.trainer.loggers:
            if getattr(logger, "save_dir", None):
                check_writable_dir(logger.save_dir, "log", "--out_dir (or the logger's save_dir)")

    def after_fit(self) -> None:
        """Let the next fit take the folders (a process that ends drops its locks anyway)."""
        for lock in self.run_locks:
            lock.release()

    def _locked_folder(self, checkpoint_folder: Path) -> Path:
        """The folder whose lock guards `checkpoint_folder`: the run's version folder when it lies inside it (its
        lock file sits beside the version, so a fit refused or stopped early leaves no version behind), else itself."""
        if self.version is not None and checkpoint_folder.absolute().is_relative_to(Path(self.version).absolute()):
            return Path(self.version)
        return checkpoint_folder

    def before_predict(self) -> None:
        """Print and write the continuations (JSONL at data.predictions_path, by default in the checkpoint's run),
        checking the path before anything is generated."""
        ckpt_path = self._setting(self.config, "ckpt_path")
        path = self.datamodule.predictions_path or prediction_path(self.plan.run, ckpt_path)
        check_writable_file(path, "predictions", "--data.predictions_path")
        self.trainer.callbacks.append(PredictionWriter(path))


@contextmanager
def _one_line_errors(parser: LightningArgumentParser, args: Any) -> Iterator[None]:
    """Turn a jsonargparse error raised inside into a one-line `UserError`."""
    try:
        yield
    except ArgumentError as e:
        raise UserError(_one_line(parser, e, args)) from None


def _one_line(parser: LightningArgumentParser, error: ArgumentError, args: Any) -> str:
    """A one-sentence version of a jsonargparse error, with the nearest valid key for unknown keys."""
    message = one_line(error)
    key = unknown_key(message)
    if key is not None:
        return unknown_key_message(key, option_keys(subcommand_parser(parser, _subcommand_of(args))))
    return f"{reworded(message).rstrip('.')}; fix it (see --help for the valid values)."


def _max_steps_given(parser: LightningArgumentParser, args: Any, subcommand: str, parsed: int) -> bool:
    """Whether trainer.max_steps was given (config files or flags) rather than left at its default, so the plan
    knows whether an epoch run is capped. A value other than the default was given; the default's value is parsed
    a second time with another default (a fraction of a second): a given value does not change."""
    if parsed != DEFAULT_MAX_STEPS:
        return True
    own = subcommand_parser(parser, subcommand)
    own.set_defaults({"trainer.max_steps": -1})
    try:
        with _one_line_errors(parser, args):
            again = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)
    finally:
        own.set_defaults({"trainer.max_steps": DEFAULT_MAX_STEPS})
    return again[subcommand].trainer.max_steps != -1


def _subcommand_of(args: Any) -> Optional[str]:
    argv = args if isinstance(args, list) else sys.argv[1:]
    return next((a for a in argv if a in LightningCLI.subcommands()), None)

