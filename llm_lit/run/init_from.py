"""Starting a run from trained weights (`--model.init_from PATH`), and loading weights to sample from.

    llm_lit fit --config configs/shakespeare.yaml --model.init_from runs/shakespeare/version_0/checkpoints/last.ckpt \\
        --data.train_files '[my_text.txt]'

`init_from` is fine-tuning, not resuming: only the weights are taken (from an llm_lit checkpoint
or a local Hugging Face folder); the optimizer, its schedule and the step counter start afresh.
The source's architecture and tokenizer come with the weights: the CLI applies its model config
(`init_settings`; runtime-only fields such as dropout and kernels stay as configured) and hands
its tokenizer to the DataModule, so the new text is encoded with the tokenizer the model knows.
`--ckpt_path` still resumes: a resumed run restores its own checkpoint over these weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llm_lit.errors import UserError
from llm_lit.interop.load import load_hf
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.run.checkpoint import CARRIED_TOKENIZER, LoadedCheckpoint, load_checkpoint, model_state_dict
from llm_lit.training.initial_weights import InitialWeights
from tokenizer import AnyTokenizer

#: Model config fields that do not change the weights: kept from the run's own config, not the source's.
RUNTIME_FIELDS = ("kernels", "dropout")


def read_initial_weights(path: str | os.PathLike) -> InitialWeights:
    """The weights at `path`: an llm_lit checkpoint file or a Hugging Face model folder (`UserError` otherwise)."""
    folder = Path(path).expanduser()
    if folder.is_dir():
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


def load_pretrained(source: str | os.PathLike, kernels: str = "torch") -> tuple[TransformerLM, AnyTokenizer]:
    """`(TransformerLM, AnyTokenizer)` from either a Hugging Face folder or an llm_lit `.ckpt` file.

    The one call a "start training from these weights" option needs (e.g. `LanguageModel(init_from=...)`).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return load_hf(path, kernels=kernels)
    if path.is_file():
        model, tokenizer = load_checkpoint(path)
        if model.config.kernels != kernels:
            rebuilt = TransformerLM(ModelConfig.from_dict({**model.config.to_dict(), "kernels": kernels}))
            rebuilt.load_state_dict(model.state_dict())
            model = rebuilt.eval()
        return model, tokenizer
    raise UserError(f"{path} does not exist; pass a Hugging Face model folder or an llm_lit .ckpt file.")
