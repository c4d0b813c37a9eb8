"""`llm_lit`: a LightningCLI over `LanguageModel` and `TextDataModule`.

    llm_lit fit --config configs/shakespeare.yaml
    llm_lit fit --config configs/shakespeare.yaml --ckpt_path last        # resume
    llm_lit validate --config configs/shakespeare.yaml --ckpt_path checkpoints/shakespeare/last.ckpt
    llm_lit predict --ckpt_path checkpoints/shakespeare/last.ckpt --data.prompts '["ROMEO:"]'
    llm_lit accounting --preset gpt2-small --memory_gib 80 --device_name H100   # params, FLOPs, memory, MFU

Everything is standard LightningCLI (`--config`, `--print_config`, `--trainer.*`,
`--ckpt_path`). Added on top: `data.vocab_size` flows into `model.config.vocab_size` and
`model.config.context_length` into `data.context_length`; a checkpoint given to
validate/test/predict supplies the model config and tokenizer itself; checkpoints load with
`weights_only=True`; and every user error is one line on stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from llm_lit.callbacks import PredictionWriter
from llm_lit.checkpoint import checkpoint_payload, read_checkpoint
from llm_lit.data import TextDataModule
from llm_lit.errors import UserError
from llm_lit.guards import check_devices, check_writable_dir
from llm_lit.accounting import main as accounting_main
from llm_lit.interop.export import main as export_main
from llm_lit.interop.import_hf import main as import_main
from llm_lit.module import LanguageModel
from llm_lit.resume import AtomicCheckpointIO, InterruptCheckpoint
from tokenizer import Tokenizer
from tokenizer.errors import TokenizerError

#: Subcommands handled outside LightningCLI: name -> function(argv) returning an exit code (or None for 0).
EXTRA_COMMANDS: dict[str, Callable[[list[str]], Optional[int]]] = {
    "export": export_main,  # llm_lit export --ckpt_path X --output DIR: a Hugging Face model folder
    "accounting": accounting_main,  # llm_lit accounting --preset gpt2-small --memory_gib 80: params, FLOPs, memory, MFU
    "import": import_main,  # llm_lit import --hf_dir DIR --output OUT: model.ckpt + config.yaml for fit
}

CHECKPOINTING_SUBCOMMANDS = ("validate", "test", "predict")

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


class LLMLitCLI(LightningCLI):
    """LightningCLI with llm_lit's argument links, defaults, checkpoint handling and one-line errors."""

    def __init__(self, args: Optional[list[str]] = None, run: bool = True) -> None:
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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, turning jsonargparse errors into one-line `UserError`s, then apply the checkpoint's settings."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as e:
            raise UserError(_one_line(parser, e, args)) from None
        subcommand = self.config.get("subcommand")
        if subcommand == "fit" and not (self.config.fit.trainer.max_steps or 0) >= 1:
            raise UserError("Set trainer.max_steps (e.g. --trainer.max_steps 2000): the learning-rate schedule's "
                            "length comes from it.")
        if subcommand:
            self._apply_checkpoint(subcommand, self.config[subcommand])

    def _apply_checkpoint(self, subcommand: str, config: Namespace) -> None:
        if config.get("weights_only") is None and "weights_only" in config:
            config.weights_only = True  # never unpickle arbitrary objects from a checkpoint
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
            return
        checkpoint = read_checkpoint(ckpt_path)  # a missing or corrupt file stops here, in one line
        payload = checkpoint_payload(checkpoint, ckpt_path)
        if subcommand not in CHECKPOINTING_SUBCOMMANDS:
            return
        # The checkpoint defines the architecture and the tokenizer; config files need not repeat them.
        model_config = dict(payload["model_config"])
        config.model.config = Namespace(**model_config)
        config.data.vocab_size = model_config["vocab_size"]
        config.data.context_length = model_config["context_length"]  # the parse-time link ran before this
        if payload.get("tokenizer") is not None:
            config.data.tokenizer_path = str(_save_checkpoint_tokenizer(payload["tokenizer"], config.data.cache_dir))

    def before_instantiate_classes(self) -> None:
        """Apply `torch_threads` before any tensor work."""
        threads = self._get(self.config, "torch_threads")
        if threads:
            torch.set_num_threads(threads)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with atomic checkpoint files and checkpoint-on-interrupt; device errors in one line."""
        config = self._get(self.config_init, "trainer", default={})
        check_devices(config.get("accelerator"), config.get("devices"))
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        try:
            trainer = super().instantiate_trainer(plugins=plugins, **kwargs)
        except MisconfigurationException as e:
            first = str(e).strip().splitlines()[0].rstrip(".")
            raise UserError(f"Invalid trainer settings: {first}; fix the --trainer values.") from e
        trainer.callbacks.append(InterruptCheckpoint())
        return trainer

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


def _save_checkpoint_tokenizer(tokenizer_dict: dict, cache_dir: str) -> Path:
    """Write a checkpoint's tokenizer into the cache (once per fingerprint) so the DataModule can use it."""
    tokenizer = Tokenizer.from_dict(tokenizer_dict)
    path = Path(cache_dir).expanduser() / "checkpoint-tokenizers" / f"{tokenizer.fingerprint()[:16]}.json"
    if not path.is_file():
        tokenizer.save(path)
    return path


# ---------------------------------------------------------------------- one-line errors
_UNKNOWN_PATTERNS = [
    re.compile(r"unrecognized arguments: --?([\w.\-]+)"),
    re.compile(r"Group '([\w.]+)' does not accept option '([\w.]+)'"),
    re.compile(r"does not accept option '([\w.]+)'"),
    re.compile(r"[Kk]ey ['\"]([\w.]+)['\"] is not expected"),
    re.compile(r"No action for key \"([\w.]+)\""),
]


def _one_line(parser: LightningArgumentParser, error: ArgumentError, args: Any) -> str:
    """A one-sentence version of a jsonargparse error, with the nearest valid key for unknown keys."""
    message = " ".join(str(error).split())
    for pattern in _UNKNOWN_PATTERNS:
        match = pattern.search(message)
        if match:
            key = ".".join(match.groups())
            keys = _valid_keys(parser, _subcommand_of(args))
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "see --help for the valid keys."
            return f"Unknown config key '{key}'; {hint}"
    message = message.replace('Parser key "', "Invalid value for ").replace('":', ":")
    return f"{message.rstrip('.')}; fix it (see --help for the valid values)."


def _subcommand_of(args: Any) -> Optional[str]:
    argv = args if isinstance(args, list) else sys.argv[1:]
    return next((a for a in argv if a in LightningCLI.subcommands()), None)


def _valid_keys(parser: LightningArgumentParser, subcommand: Optional[str]) -> list[str]:
    """Every dotted option key the (sub)command parser accepts."""
    target = parser
    if subcommand is not None:
        action = getattr(parser, "_subcommands_action", None)
        target = action._name_parser_map.get(subcommand, parser) if action is not None else parser
    keys = []
    for action in target._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                keys.append(option[2:])
    return keys


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
        if os.environ.get("LLM_LIT_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
