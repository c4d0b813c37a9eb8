"""`llm_lit`: a LightningCLI over `LanguageModel` and `TextDataModule`.

    llm_lit fit --config configs/shakespeare.yaml
    llm_lit fit --config configs/shakespeare.yaml --ckpt_path last        # resume
    llm_lit validate --config configs/shakespeare.yaml --ckpt_path checkpoints/shakespeare/last.ckpt
    llm_lit predict --ckpt_path checkpoints/shakespeare/last.ckpt --data.prompts '["ROMEO:"]'
    llm_lit accounting --preset gpt2-small --memory_gib 80 --device_name H100   # params, FLOPs, memory, MFU

Everything is standard LightningCLI (`--config`, `--print_config`, `--trainer.*`,
`--ckpt_path`). Added on top: `data.vocab_size` flows into `model.config.vocab_size` and
`model.config.context_length` into `data.context_length`; a checkpoint given to
validate/test/predict supplies the model config and tokenizer itself (the file is read once,
see `llm_lit.checkpoint`); checkpoints load with `weights_only=True`; and every user error is
one line on stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import sys
import warnings
from argparse import ArgumentError
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
from llm_lit.checkpoint import CHECKPOINT_DEFINES_MODEL, LoadedCheckpoint, apply_to_config, read_given_checkpoint
from llm_lit.data import TextDataModule
from llm_lit.errors import UserError, one_line, print_error
from llm_lit.guards import check_devices, check_writable_dir, require_max_steps
from llm_lit.interop.export import main as export_main
from llm_lit.interop.import_hf import main as import_main
from llm_lit.lightning_compat import (NoHyperparametersInCheckpoints, option_keys, reworded, subcommand_parser,
                                      unknown_key)
from llm_lit.module import LanguageModel
from llm_lit.resume import AtomicCheckpointIO, InterruptCheckpoint
from tokenizer.errors import TokenizerError

#: Subcommands handled outside LightningCLI: name -> function(argv) returning an exit code (or None for 0).
EXTRA_COMMANDS: dict[str, Callable[[list[str]], Optional[int]]] = {
    "export": export_main,  # llm_lit export --ckpt_path X --output DIR: a Hugging Face model folder
    "accounting": accounting_main,  # llm_lit accounting --preset gpt2-small --memory_gib 80: params, FLOPs, memory, MFU
    "import": import_main,  # llm_lit import --hf_dir DIR --output OUT: model.ckpt + config.yaml for fit
}

#: Trainer settings that differ from Lightning's defaults (configs and flags override them).
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_steps": 2000,
    "val_check_interval": 250,
    "check_val_every_n_epoch": None,
    "log_every_n_steps": 10,
    "callbacks": [
        {   # best by validation loss, plus last.ckpt at every validation
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": "checkpoints", "filename": "best-step{step}", "monitor": "val/loss",
                          "mode": "min", "save_top_k": 1, "save_last": True, "auto_insert_metric_name": False,
                          "enable_version_counter": False},
        },
        {   # last.ckpt refreshed every N optimizer steps between validations too
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": "checkpoints", "every_n_train_steps": 100, "save_top_k": 0, "save_last": True,
                          "enable_version_counter": False},
        },
    ],
}


class LLMLitCLI(NoHyperparametersInCheckpoints, LightningCLI):
    """LightningCLI with llm_lit's argument links, defaults, checkpoint handling and one-line errors."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True) -> None:
        #: The `--ckpt_path` file, read once at parse time (None for 'last', 'best' or no checkpoint).
        self.checkpoint: Optional[LoadedCheckpoint] = None
        quiet = {"exit_on_error": False}
        parser_kwargs = {"exit_on_error": False, **{name: dict(quiet) for name in self.subcommands()}}
        super().__init__(LanguageModel, TextDataModule, subclass_mode_model=False, subclass_mode_data=False,
                         auto_configure_optimizers=False, parser_kwargs=parser_kwargs,
                         save_config_kwargs={"overwrite": True}, seed_everything_default=1337,
                         args=args, run=run)

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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, turning jsonargparse errors into one-line `UserError`s; read `--ckpt_path` once and, for
        validate/test/predict, apply its model config (the links follow)."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UserError(_one_line(parser, e, args)) from None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if subcommand == "fit":
            require_max_steps(config.trainer.max_steps)
            check_time_budget(config.get("time_budget"))
        if config.get("weights_only") is None and "weights_only" in config:
            config.weights_only = True  # never unpickle arbitrary objects from a checkpoint
        self.checkpoint = read_given_checkpoint(config.get("ckpt_path"))  # a bad file stops here, in one line
        if self.checkpoint is not None and subcommand in CHECKPOINT_DEFINES_MODEL:
            # The checkpoint defines the architecture and the tokenizer; config files need not repeat them.
            try:
                self.config = apply_to_config(parser, self.config, subcommand, self.checkpoint)
            except ArgumentError as e:
                raise UserError(_one_line(parser, e, args)) from None

    def before_instantiate_classes(self) -> None:
        """Apply `torch_threads` before any tensor work."""
        threads = self._setting(self.config, "torch_threads")
        if threads:
            torch.set_num_threads(threads)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with atomic checkpoint files and checkpoint-on-interrupt; device errors in one line."""
        config = self._setting(self.config_init, "trainer", default={})
        check_devices(config.get("accelerator"), config.get("devices"))
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO(preloaded=self.checkpoint))
        try:
            trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        except MisconfigurationException as e:
            first = str(e).strip().splitlines()[0].rstrip(".")
            raise UserError(f"Invalid trainer settings: {first}; fix the --trainer values.") from e
        trainer.callbacks.append(InterruptCheckpoint())
        budget = self._setting(self.config, "time_budget")
        if budget is not None and self.subcommand == "fit":
            trainer.callbacks.append(TimeBudget(budget))
        return trainer

    def after_instantiate_classes(self) -> None:
        """Hand the checkpoint's tokenizer to the DataModule, in memory (validate, test and predict)."""
        if self.checkpoint is not None and self.subcommand in CHECKPOINT_DEFINES_MODEL:
            tokenizer = self.checkpoint.tokenizer()
            if tokenizer is not None:
                self.datamodule.use_tokenizer(tokenizer)

    def _setting(self, config: Any, key: str, default: Any = None) -> Any:
        """`key` of the running subcommand's part of `config` (all of `config` when there is no subcommand)."""
        return config.get(str(self.subcommand), config).get(key, default)

    def before_fit(self) -> None:
        """Check that checkpoints and logs can be written before any training time is spent."""
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                check_writable_dir(callback.dirpath, "checkpoint", "dirpath in the ModelCheckpoint callback")
        for logger in self.trainer.loggers:
            if getattr(logger, "save_dir", None):
                check_writable_dir(logger.save_dir, "log", "--trainer.default_root_dir (or logger save_dir)")

    def before_predict(self) -> None:
        """Print and write the continuations (JSONL at data.predictions_path)."""
        self.trainer.callbacks.append(PredictionWriter(self.datamodule.predictions_path))


# ---------------------------------------------------------------------- one-line errors
def _one_line(parser: LightningArgumentParser, error: ArgumentError, args: Any) -> str:
    """A one-sentence version of a jsonargparse error, with the nearest valid key for unknown keys."""
    message = one_line(error)
    key = unknown_key(message)
    if key is not None:
        keys = option_keys(subcommand_parser(parser, _subcommand_of(args)))
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "see --help for the valid keys."
        return f"Unknown config key '{key}'; {hint}"
    return f"{reworded(message).rstrip('.')}; fix it (see --help for the valid values)."


def _subcommand_of(args: Any) -> Optional[str]:
    argv = args if isinstance(args, list) else sys.argv[1:]
    return next((a for a in argv if a in LightningCLI.subcommands()), None)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `llm_lit` console script; returns the exit code (2 for user errors)."""
    # Our validation IterableDataset has an exact __len__ (it never uses workers), so this warning is noise.
    warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined.*")
    if argv is not None:  # called from Python (tests, notebooks) with explicit arguments, on purpose
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in EXTRA_COMMANDS:
            return EXTRA_COMMANDS[args[0]](args[1:]) or 0
        LLMLitCLI(args=argv)
        return 0
    except (UserError, TokenizerError) as e:
        return print_error(e)


if __name__ == "__main__":
    sys.exit(main())
