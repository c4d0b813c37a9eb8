"""`llm_lit`: the command line's entry point, which lists the commands and hands each to its module.

    llm_lit fit --config configs/shakespeare.yaml
    llm_lit fit --config configs/shakespeare.yaml --ckpt_path last        # resume
    llm_lit validate --config configs/shakespeare.yaml --ckpt_path last
    llm_lit predict --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --data.prompts '["ROMEO:"]'
    llm_lit plot                                                          # curves of the newest run
    llm_lit accounting --preset gpt2-small --memory_gib 80 --device_name H100   # params, FLOPs, memory, MFU
    llm_lit chat --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt  # interactive sampling

fit, validate, test and predict are a LightningCLI (`llm_lit.commands.lightning_cli`: everything standard,
`--config`, `--print_config`, `--trainer.*`, `--ckpt_path`, plus llm_lit's run folders and checks); every other
command is a module of `llm_lit.commands` with a `main(argv)`. This module imports neither torch nor Lightning
(they take seconds to load): `llm_lit --help` prints the command list at once, and a command loads only what it
uses. Every user error is one line on stderr with exit code 2.
"""

from __future__ import annotations

import difflib
import importlib
import signal
import sys
from typing import Optional

from llm_lit.commands.command_list import EXTRA_COMMANDS, command_descriptions, help_text
from llm_lit.errors import UserError, print_error
from llm_lit.run.host_memory import keep_freed_memory
from llm_lit.training.quiet import silence_lightning_noise
from tokenizer.errors import TokenizerError

__all__ = ["EXTRA_COMMANDS", "check_command", "main"]


def run_extra_command(name: str, argv: list[str]) -> int:
    """Run the extra command `name` (a key of EXTRA_COMMANDS) on `argv`; returns its exit code."""
    module, _ = EXTRA_COMMANDS[name]
    command = importlib.import_module(f"llm_lit.commands.{module}")
    return command.main(argv) or 0


def check_command(args: list[str]) -> None:
    """`UserError` listing every command when `args` names none (or an unknown one)."""
    commands = list(command_descriptions())
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
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--help"], ["-h"]):  # at once: the command list needs neither torch nor Lightning
        print(help_text())
        return 0
    silence_lightning_noise(args_from_python=argv is not None)
    try:
        check_command(args)
        if args[0] not in EXTRA_COMMANDS:
            keep_freed_memory()  # before torch allocates anything
        from llm_lit.run.interrupts import run_until_signal  # (loads torch and Lightning)

        if args[0] in EXTRA_COMMANDS:  # (Ctrl-C is theirs: chat stops a continuation with it)
            return run_until_signal(lambda: run_extra_command(args[0], args[1:]), signals=(signal.SIGTERM,))
        return run_until_signal(lambda: _lightning_command(argv))
    except (UserError, TokenizerError) as e:
        return print_error(e)
    except KeyboardInterrupt:
        print("Stopped by SIGINT.", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT


def _lightning_command(argv: Optional[list[str]]) -> int:
    """Run fit, validate, test or predict (LightningCLI parses `argv`, or sys.argv when None)."""
    from llm_lit.commands.lightning_cli import LLMLitCLI

    LLMLitCLI(args=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
