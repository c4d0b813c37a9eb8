"""`llm_lit`: a LightningCLI over `LanguageModel` and `TextDataModule`.

    llm_lit fit --config configs/shakespeare.yaml
    llm_lit fit --config configs/shakespeare.yaml --ckpt_path last        # resume
    llm_lit validate --config configs/shakespeare.yaml --ckpt_path last
    llm_lit predict --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --data.prompts '["ROMEO:"]'
    llm_lit plot                                                          # curves of the newest run
    llm_lit accounting --preset gpt2-small --memory_gib 80 --device_name H100   # params, FLOPs, memory, MFU
    llm_lit chat --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt  # interactive sampling

Everything is standard LightningCLI (`--config`, `--print_config`, `--trainer.*`,
`--ckpt_path`). Added on top: `data.vocab_size` flows into `model.config.vocab_size` and
`model.config.context_length` into `data.context_length`; a checkpoint given to
validate/test/predict supplies the model config and tokenizer itself (the file is read once,
see `llm_lit.checkpoint`); checkpoints load with `weights_only=True`; every run's files go to
`--out_dir/--run_name/version_N/` (see `llm_lit.run_dir`); and every user error is one line on
stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import re
import signal
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from llm_lit.accounting import main as accounting_main
from llm_lit.budget import TimeBudget, check_time_budget
from llm_lit.callbacks import PredictionWriter
from llm_lit.chat import main as chat_main
from llm_lit.checkpoint import CHECKPOINT_DEFINES_MODEL, LoadedCheckpoint, apply_to_config, read_given_checkpoint
from llm_lit.commands import unknown_key_message
from llm_lit.data import TextDataModule
from llm_lit.data.datamodule import STRIDE_NEEDS_EPOCHS
from llm_lit.errors import UserError, one_line, print_error
from llm_lit.guards import check_devices, check_strategy, check_writable_dir, check_writable_file, require_max_steps
from llm_lit.interop.export import main as export_main
from llm_lit.init_from import InitialWeights, init_settings, read_initial_weights
from llm_lit.init_from import main as tokenizer_main
from llm_lit.interop.import_hf import main as import_main
from llm_lit.lightning_compat import (NoHyperparametersInCheckpoints, add_listed_subcommand, class_path_named,
                                      option_keys, reworded, subcommand_parser, unknown_key)
from llm_lit.module import LanguageModel
from llm_lit.plot import main as plot_main
from llm_lit.precision import default_precision
from llm_lit.quiet import silence_lightning_noise
from llm_lit.resume import AtomicCheckpointIO, InterruptCheckpoint, SecondInterrupt, remove_stale_temporary_checkpoints
from llm_lit.run_dir import (Run, SaveConfigOfFit, add_run_arguments, place_checkpoints, prediction_path,
                             resolve_last, trainer_placement)
from llm_lit.run_lock import RunLock
from tokenizer.errors import TokenizerError

#: Subcommands handled outside LightningCLI: name -> (function(argv) returning an exit code or None for 0,
#: the line `llm_lit --help` shows).
EXTRA_COMMANDS: dict[str, tuple[Callable[[list[str]], Optional[int]], str]] = {
    "export": (export_main, "Export a checkpoint to a Hugging Face model folder (--ckpt_path X --output DIR)."),
    "import": (import_main, "Import a local Hugging Face Llama or GPT-2 folder as a checkpoint and config for fit."),
    "accounting": (accounting_main, "Parameters, FLOPs, memory and MFU of a model (--preset gpt2-small)."),
    "plot": (plot_main, "Plot a run's train/val loss and bits per byte as a PNG (llm_lit plot [LOG_DIR])."),
    "chat": (chat_main, "Load a checkpoint once and continue prompts typed or piped in, token by token."),
    "tokenizer": (tokenizer_main, "Write the tokenizer of a checkpoint or HF folder to a file (--ckpt_path X --output F)."),
}

#: trainer.max_steps of a fit without trainer.max_epochs (with max_epochs, the epochs end the run).
DEFAULT_MAX_STEPS = 2000
#: The parsed trainer.max_steps when none was given: DEFAULT_MAX_STEPS, or -1 (no cap) with max_epochs.
UNSET_MAX_STEPS = -2

#: Trainer settings that differ from Lightning's defaults (configs and flags override them). The checkpoint
#: callbacks have no dirpath: they write into the run's version folder (`llm_lit.run_dir`).
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": UNSET_MAX_STEPS,
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
        #: The `--ckpt_path` file, read once at parse time (None for 'best' or no checkpoint).
        self.checkpoint: Optional[LoadedCheckpoint] = None
        #: The run named by --out_dir/--run_name (or the config and corpus), and the version folder a fit writes to.
        self.run_folder: Optional[Run] = None
        self.version: Optional[Path] = None
        #: The locks of the checkpoint folders fit writes into (released when this object goes).
        self.run_locks: list[RunLock] = []
        #: The `--model.init_from` weights, read once at parse time.
        self.initial_weights: Optional[InitialWeights] = None
        # allow_abbrev=False: argparse would otherwise take `--trainer.max_st` for `--trainer.max_steps`
        # (a YAML file's keys are never abbreviated, so neither are flags).
        strict = {"exit_on_error": False, "allow_abbrev": False}
        parser_kwargs = {**strict, "prog": "llm_lit", **{name: dict(strict) for name in self.subcommands()}}
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
        """Parse, turning jsonargparse errors into one-line `UserError`s; read `--ckpt_path` once and, for
        validate/test/predict, apply its model config (the links follow)."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UserError(_one_line(parser, e, args)) from None
        subcommand = self.config.get("subcommand")
        if not subcommand:  # LLMLitCLI(run=False): the Trainer is built as for fit
            self.run_folder = Run.from_config(self.config)
            return
        config = self.config[subcommand]
        if subcommand == "fit":
            _resolve_run_length(config.trainer, config.data)
            check_time_budget(config.get("time_budget"))
        elif config.trainer.max_steps == UNSET_MAX_STEPS:  # Lightning refuses -2; the run length is moot here
            config.trainer.max_steps = DEFAULT_MAX_STEPS
        if config.get("weights_only") is None and "weights_only" in config:
            config.weights_only = True  # never unpickle arbitrary objects from a checkpoint
        self.run_folder = Run.from_config(config)
        config.ckpt_path = resolve_last(self.run_folder, subcommand, config.get("ckpt_path"))
        init_from = config.model.get("init_from") if "model" in config else None
        if init_from:  # its architecture and vocabulary, as a checkpoint's below
            self.initial_weights = read_initial_weights(init_from)
            settings = init_settings(self.initial_weights, _as_dict(config.model.config))
            try:
                self.config = parser.parse_object({subcommand: settings}, self.config)
            except ArgumentError as e:
                raise UserError(_one_line(parser, e, args)) from None
            config = self.config[subcommand]
        self.checkpoint = read_given_checkpoint(config.get("ckpt_path"))  # a bad file stops here, in one line
        if self.checkpoint is not None and subcommand in CHECKPOINT_DEFINES_MODEL:
            # The checkpoint defines the architecture and the tokenizer; config files need not repeat them.
            try:
                self.config = apply_to_config(parser, self.config, subcommand, self.checkpoint)
            except ArgumentError as e:
                raise UserError(_one_line(parser, e, args)) from None

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
        """Apply `torch_threads` before any tensor work."""
        threads = self._setting(self.config, "torch_threads")
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
            plugins.append(AtomicCheckpointIO(preloaded=self.checkpoint))
        if config.get("precision") is None:
            kwargs["precision"] = default_precision(config.get("accelerator"))
        self.version, placement = trainer_placement(self.subcommand, self.run_folder,
                                                    self._setting(self.config, "ckpt_path"), config)
        kwargs.update(placement)
        try:
            trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        except MisconfigurationException as e:
            first = str(e).strip().splitlines()[0].rstrip(".")
            raise UserError(f"Invalid trainer settings: {first}; fix the --trainer values.") from e
        trainer.callbacks.append(InterruptCheckpoint())
        budget = self._setting(self.config, "time_budget")
        if budget is not None and self.subcommand == "fit":
            trainer.callbacks.append(TimeBudget(budget))
        if self.version is not None:
            place_checkpoints(trainer, self.version)
        return trainer

    def after_instantiate_classes(self) -> None:
        """Hand the init_from weights to the model, and its tokenizer (or, for validate, test and predict, the
        checkpoint's) to the DataModule, in memory."""
        if self.initial_weights is not None:
            self.model.initial_weights = self.initial_weights
            if self.initial_weights.tokenizer is not None:
                self.datamodule.use_tokenizer(self.initial_weights.tokenizer)
        if self.checkpoint is not None and self.subcommand in CHECKPOINT_DEFINES_MODEL:
            tokenizer = self.checkpoint.tokenizer()
            if tokenizer is not None:
                self.datamodule.use_tokenizer(tokenizer)

    def _setting(self, config: Any, key: str, default: Any = None) -> Any:
        """`key` of the running subcommand's part of `config` (all of `config` when there is no subcommand)."""
        return config.get(str(self.subcommand), config).get(key, default)

    def before_fit(self) -> None:
        """Check every setting, and that checkpoints and logs can be written, before any data or training time
        is spent; hold the checkpoint folders' locks (one fit per folder)."""
        self.model.check_fit_settings(self.trainer)
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
        path = self.datamodule.predictions_path or prediction_path(self.run_folder, ckpt_path)
        check_writable_file(path, "predictions", "--data.predictions_path")
        self.trainer.callbacks.append(PredictionWriter(path))


# ---------------------------------------------------------------------- one-line errors
#: Packages of optional integrations -> the llm_lit extra that installs them.
EXTRAS = {"wandb": "wandb"}


def missing_package_message(error: BaseException) -> Optional[str]:
    """One sentence for an instantiation error caused by a missing package (None for any other error)."""
    causes, cause = [], error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    missing = next((c for c in causes if isinstance(c, ModuleNotFoundError)), None)
    if missing is None:
        return None
    found = re.search(r"No module named '([\w.]+)'|Requirement '([A-Za-z0-9_.-]+)", str(missing))
    package = (found.group(1) or found.group(2)) if found else getattr(missing, "name", None) or "?"
    package = re.split(r"[<>=!~ ]", package.split(".")[0])[0]
    owner = class_path_named(one_line(error))
    who = f"{owner.rsplit('.', 1)[-1]} needs" if owner else "This configuration needs"
    if package in EXTRAS:
        install = f"pip install 'llm_lit[{EXTRAS[package]}]' (or pip install {package})"
    else:
        install = f"pip install {package}"
    return f"{who} the '{package}' package, which is not installed; {install}, or choose another class."


def _one_line(parser: LightningArgumentParser, error: ArgumentError, args: Any) -> str:
    """A one-sentence version of a jsonargparse error, with the nearest valid key for unknown keys."""
    message = one_line(error)
    key = unknown_key(message)
    if key is not None:
        return unknown_key_message(key, option_keys(subcommand_parser(parser, _subcommand_of(args))))
    return f"{reworded(message).rstrip('.')}; fix it (see --help for the valid values)."


def _resolve_run_length(trainer: Any, data: Any) -> None:
    """trainer.max_steps of a fit: DEFAULT_MAX_STEPS when neither it nor max_epochs is given; with max_epochs,
    max_steps unset (or -1) leaves the epochs to end the run and a given one caps it, as in Lightning.
    data.stride needs epochs."""
    epochs = trainer.get("max_epochs")
    if (epochs is None or epochs == -1) and data.get("stride") is not None:
        raise UserError(STRIDE_NEEDS_EPOCHS.format(stride=data.stride))
    if epochs is not None and epochs != -1:
        if epochs < 1:
            raise UserError(f"trainer.max_epochs must be a positive number of epochs (got {epochs}); pass e.g. "
                            "--trainer.max_epochs 3, or leave it unset to train for trainer.max_steps.")
        if trainer.max_steps in (UNSET_MAX_STEPS, -1):
            trainer.max_steps = -1
        else:
            require_max_steps(trainer.max_steps)
        return
    if trainer.max_steps == UNSET_MAX_STEPS:
        trainer.max_steps = DEFAULT_MAX_STEPS
    require_max_steps(trainer.max_steps)


def _as_dict(namespace: Any) -> dict[str, Any]:
    """A parsed (jsonargparse) namespace, or a plain dict, as a dict."""
    return namespace.as_dict() if hasattr(namespace, "as_dict") else dict(namespace or {})


def _subcommand_of(args: Any) -> Optional[str]:
    argv = args if isinstance(args, list) else sys.argv[1:]
    return next((a for a in argv if a in LightningCLI.subcommands()), None)


def check_command(args: list[str]) -> None:
    """`UserError` listing every command when `args` names none (or an unknown one)."""
    commands = [*LightningCLI.subcommands(), *EXTRA_COMMANDS]
    if args and (args[0].startswith("-") or args[0] in commands):
        return
    listed = ", ".join(commands)
    if not args:
        raise UserError(f"Give a command: {listed} (llm_lit --help says more).")
    close = difflib.get_close_matches(args[0], commands, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UserError(f"Unknown command '{args[0]}'; {hint}The commands are {listed} (llm_lit --help says more).")


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `llm_lit` console script; returns the exit code (2 for user errors)."""
    silence_lightning_noise(args_from_python=argv is not None)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        check_command(args)
        if args[0] in EXTRA_COMMANDS:
            run_command, _ = EXTRA_COMMANDS[args[0]]
            return run_command(args[1:]) or 0
        LLMLitCLI(args=argv)
        return 0
    except (UserError, TokenizerError) as e:
        return print_error(e)
    except SecondInterrupt:
        print("Aborted by a second Ctrl-C; no checkpoint written (the previous last.ckpt, if any, is intact).",
              file=sys.stderr, flush=True)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
