"""`llm_lit export`: a checkpoint as a Hugging Face model folder.

    llm_lit export --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --output hf_model/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from llm_lit.interop.export import export_hf, hf_layout
from llm_lit.run.checkpoint import load_checkpoint


def export_checkpoint(ckpt_path: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False,
                      dtype: str = "float32") -> Path:
    """Export an llm_lit checkpoint (model config and tokenizer come from the checkpoint itself)."""
    model, tokenizer = load_checkpoint(ckpt_path)
    return export_hf(model, tokenizer, output, overwrite=overwrite, dtype=dtype)


def export(ckpt_path: str, output: str, format: Literal["hf"] = "hf", overwrite: bool = False,
           dtype: Literal["float32", "bfloat16", "float16"] = "float32") -> None:
    """Export an llm_lit checkpoint to a Hugging Face model folder (transformers loads it with from_pretrained).

    Args:
        ckpt_path: A .ckpt file written by llm_lit fit.
        output: The folder to write (config.json, model.safetensors, tokenizer.json, ...).
        format: The target layout family; 'hf' picks LlamaForCausalLM for RoPE models and GPT2LMHeadModel for learned positions.
        overwrite: Replace the output folder if it already exists.
        dtype: Precision of the stored weights.
    """
    model, tokenizer = load_checkpoint(ckpt_path)
    path = export_hf(model, tokenizer, output, overwrite=overwrite, dtype=dtype)
    architecture = "LlamaForCausalLM" if hf_layout(model.config) == "llama" else "GPT2LMHeadModel"
    print(f"Exported {ckpt_path} to {path} as {architecture}.")


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit export ...`: parse `argv` with jsonargparse and export; returns the exit code.

    Bad arguments and bad checkpoints raise `UserError` (the `llm_lit` CLI prints it as one line).
    """
    from llm_lit.commands.parsing import run_function

    return run_function("llm_lit export", export, argv)
