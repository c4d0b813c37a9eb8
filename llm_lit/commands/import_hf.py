"""Turn a Hugging Face model folder into a starting point for `llm_lit fit`.

    llm_lit import --hf_dir path/to/hf_model --output imported/
    llm_lit fit --config configs/shakespeare.yaml --config imported/config.yaml --ckpt_path imported/model.ckpt

The output folder holds:

* `model.ckpt`: an llm_lit checkpoint with the imported weights and tokenizer, at step 0 and
  with no optimizer state (`llm_lit.run.checkpoint.write_checkpoint`; no model or Trainer is
  built for it), so `fit --ckpt_path` starts fine-tuning from these weights with a fresh
  optimizer and schedule (and `validate` / `predict --ckpt_path` use it directly);
* `tokenizer.json`: the imported tokenizer in our format;
* `config.yaml`: the `model.config` of the imported architecture and `data.tokenizer_path` /
  `data.vocab_size`, so the training data is encoded with the model's own tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import yaml

from llm_lit.interop.export import staged_folder
from llm_lit.interop.load import load_hf
from llm_lit.errors import UserError
from llm_lit.run.checkpoint import write_checkpoint
from llm_lit.run.checkpoint_io import write_failure_message
from tokenizer.atomic import atomic_write


def import_hf(hf_dir: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write `model.ckpt`, `tokenizer.json` and `config.yaml` for a local Hugging Face folder; returns `output`."""
    model, tokenizer = load_hf(hf_dir)
    output = Path(output).expanduser().resolve()
    try:
        with staged_folder(output, overwrite) as staging:
            write_checkpoint(model, tokenizer, staging / "model.ckpt")
            tokenizer.save(staging / "tokenizer.json")
            config = {
                "model": {"config": model.config.to_dict()},
                "data": {"tokenizer_path": str(output / "tokenizer.json"), "vocab_size": model.config.vocab_size},
            }
            with atomic_write(staging / "config.yaml") as f:
                f.write(f"# Architecture and tokenizer of {Path(hf_dir).expanduser().resolve()}, imported by llm_lit import.\n")
                yaml.safe_dump(config, f, sort_keys=False)
    except OSError as e:  # a full disk, a file-size limit, no permission: nothing of the import is left
        raise UserError(write_failure_message(output, e, "imported model folder", "--output")) from None
    return output


def import_command(hf_dir: str, output: str, overwrite: bool = False) -> None:
    """Import a local Hugging Face LlamaForCausalLM / GPT2LMHeadModel folder as a starting point for llm_lit fit.

    Args:
        hf_dir: The Hugging Face model folder (config.json, weights, tokenizer files); nothing is downloaded.
        output: The folder to write (model.ckpt, tokenizer.json, config.yaml).
        overwrite: Replace the output folder if it already exists.
    """
    path = import_hf(hf_dir, output, overwrite=overwrite)
    print(f"Imported {hf_dir} to {path}; fine-tune with: llm_lit fit --config <your config> "
          f"--config {path / 'config.yaml'} --ckpt_path {path / 'model.ckpt'}")


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit import ...`: parse `argv` with jsonargparse and import; returns the exit code."""
    from llm_lit.commands.parsing import run_function

    return run_function("llm_lit import", import_command, argv)
