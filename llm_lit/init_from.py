"""Starting a run from trained weights (`--model.init_from PATH`), and a checkpoint's tokenizer written out.

    llm_lit fit --config configs/shakespeare.yaml --model.init_from checkpoints/shakespeare/last.ckpt \\
        --data.train_files '[my_text.txt]'
    llm_lit tokenizer --ckpt_path checkpoints/shakespeare/last.ckpt --output tok.json

`init_from` is fine-tuning, not resuming: only the weights are taken (from an llm_lit checkpoint
or a local Hugging Face folder); the optimizer, its schedule and the step counter start afresh.
The source's architecture and tokenizer come with the weights: the CLI applies its model config
(`init_settings`; runtime-only fields such as dropout and kernels stay as configured) and hands
its tokenizer to the DataModule, so the new text is encoded with the tokenizer the model knows.
`--ckpt_path` still resumes: a resumed run restores its own checkpoint over these weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from llm_lit.checkpoint import CARRIED_TOKENIZER, LoadedCheckpoint, model_state_dict
from llm_lit.errors import UserError
from llm_lit.model import ModelConfig
from tokenizer import AnyTokenizer

#: Model config fields that do not change the weights: kept from the run's own config, not the source's.
RUNTIME_FIELDS = ("kernels", "dropout")


@dataclass
class InitialWeights:
    """The weights, architecture and tokenizer a run starts from (`model.init_from`)."""

    source: str
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Optional[AnyTokenizer]


def read_initial_weights(path: str | os.PathLike) -> InitialWeights:
    """The weights at `path`: an llm_lit checkpoint file or a Hugging Face model folder (`UserError` otherwise)."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        from llm_lit.interop.load import load_hf

        if not (folder / "config.json").is_file():
            raise UserError(f"model.init_from '{path}' is a folder without config.json; pass an llm_lit checkpoint "
                            "(.ckpt) or a Hugging Face model folder.")
        model, tokenizer = load_hf(folder)
        return InitialWeights(str(path), model.config, model.state_dict(), tokenizer)
    if not folder.exists():
        raise UserError(f"model.init_from '{path}' does not exist; pass an llm_lit checkpoint (.ckpt) or a Hugging "
                        "Face model folder.")
    checkpoint = LoadedCheckpoint.read(folder)
    return InitialWeights(str(path), checkpoint.model_config(), model_state_dict(checkpoint.contents),
                          checkpoint.tokenizer())


def init_settings(initial: InitialWeights, configured: dict[str, Any]) -> dict[str, Any]:
    """The settings `initial` imposes on a run whose model config is `configured` (a dict): its architecture
    (runtime-only fields kept as configured) and its vocabulary; its tokenizer replaces data.tokenizer_path."""
    model_config = initial.config.to_dict()
    for name in RUNTIME_FIELDS:
        if name in configured:
            model_config[name] = configured[name]
    model_config.pop("attention", None)  # the deprecated alias of kernels
    data: dict[str, Any] = {"vocab_size": model_config["vocab_size"]}
    if initial.tokenizer is not None:
        data.update(CARRIED_TOKENIZER)
    return {"model": {"config": model_config}, "data": data}


def write_tokenizer(ckpt_path: str, output: str) -> None:
    """Write the tokenizer an llm_lit checkpoint (or a Hugging Face model folder) carries, as our tokenizer JSON.

    Args:
        ckpt_path: A .ckpt file written by llm_lit fit, or a Hugging Face model folder.
        output: The JSON file to write (read back by --data.tokenizer_path or tokenizer.load_tokenizer).
    """
    source = Path(ckpt_path).expanduser()
    if source.is_dir():
        from llm_lit.interop.hf_tokenizer import load_hf_tokenizer

        tokenizer = load_hf_tokenizer(source)
    else:
        if not source.exists():
            raise UserError(f"The checkpoint '{ckpt_path}' does not exist; pass a .ckpt file written by llm_lit fit "
                            "(or a Hugging Face model folder).")
        tokenizer = LoadedCheckpoint.read(source).tokenizer()
        if tokenizer is None:
            raise UserError(f"The checkpoint '{ckpt_path}' carries no tokenizer; pass a checkpoint saved by llm_lit fit.")
    if Path(output).expanduser().is_dir():
        raise UserError(f"--output '{output}' is a folder; pass the path of the JSON file to write, e.g. {output}/tokenizer.json.")
    tokenizer.save(Path(output).expanduser())
    print(f"Wrote the {tokenizer.vocab_size}-token tokenizer of {ckpt_path} to {output}.")


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit tokenizer --ckpt_path X --output tok.json`; returns the exit code."""
    from llm_lit.commands import run_function

    return run_function("llm_lit tokenizer", write_tokenizer, argv)
