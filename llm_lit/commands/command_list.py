"""The `llm_lit` commands and the sentence that describes each, as `llm_lit --help` lists them.

Plain data and text: read by the entry point (`llm_lit.commands.cli`) and by the LightningCLI
(`llm_lit.commands.lightning_cli`), loading neither torch nor Lightning.
"""

from __future__ import annotations

import shutil
import textwrap
from typing import Optional

#: LightningCLI's subcommands (`llm_lit.commands.lightning_cli`) -> the sentence `llm_lit --help` and their own
#: --help show (Lightning's would be the first line of the Trainer method's docstring, cut mid-sentence).
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "Train a model, or resume a run with --ckpt_path last; its files go to runs/NAME/version_N/ (--config X).",
    "validate": "Print the validation loss and bits per byte of a checkpoint (--ckpt_path X).",
    "test": "Print the test split's loss and bits per byte of a checkpoint (--ckpt_path X).",
    "predict": "Continue prompts with a checkpoint and write the continuations as JSONL (--ckpt_path X "
               "--data.prompts '[...]').",
}

#: Subcommands handled outside LightningCLI: name -> (module of `llm_lit.commands` whose `main(argv)` runs it,
#: returning an exit code or None for 0; the sentence `llm_lit --help` shows). Imported only when run.
EXTRA_COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "Build the tokenizer and token cache of fit's data settings, without training (--config X)."),
    "eval": ("eval", "Score a checkpoint on lm-evaluation-harness tasks in place (--ckpt_path X --tasks hellaswag,...)."),
    "chat": ("chat", "Load a checkpoint once and continue prompts typed or piped in, token by token."),
    "serve": ("serve", "Serve a checkpoint behind an OpenAI-compatible HTTP API, with continuous batching (--ckpt_path X)."),
    "export": ("export", "Export a checkpoint to a Hugging Face model folder (--ckpt_path X --output DIR)."),
    "import": ("import_hf", "Import a local Hugging Face Llama or GPT-2 folder as a checkpoint and config for fit."),
    "tokenizer": ("tokenizer", "Write the tokenizer of a checkpoint or HF folder to a file (--ckpt_path X --output F)."),
    "accounting": ("accounting", "Count a model's parameters, FLOPs and memory, and estimate its MFU "
                                 "(--preset gpt2-small)."),
    "plot": ("plot", "Plot a run's train/val loss and bits per byte as a PNG (llm_lit plot [LOG_DIR])."),
}


def command_descriptions() -> dict[str, str]:
    """Every command -> its one-sentence description, in the order `llm_lit --help` lists them."""
    return {**LIGHTNING_COMMANDS, **{name: line for name, (_, line) in EXTRA_COMMANDS.items()}}


def help_text(width: Optional[int] = None) -> str:
    """What `llm_lit --help` prints: the usage and every command with its sentence, wrapped to `width` columns
    (default: the terminal's, at most 100)."""
    width = width or min(shutil.get_terminal_size().columns, 100)
    indent = " " * 14
    lines = ["usage: llm_lit COMMAND [OPTIONS]", "",
             "Train and use GPT-style language models with Lightning. llm_lit COMMAND --help lists a command's "
             "options; --config FILE and --print_config go after fit, validate, test or predict.", "", "commands:"]
    lines[2:3] = textwrap.wrap(lines[2], width)
    for name, description in command_descriptions().items():
        lines += textwrap.wrap(description, width, initial_indent=f"  {name:<11} ", subsequent_indent=indent)
    return "\n".join(lines)
