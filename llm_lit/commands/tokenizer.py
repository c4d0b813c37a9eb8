"""`llm_lit tokenizer`: a checkpoint's tokenizer written out as a file.

    llm_lit tokenizer --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --output tok.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from llm_lit.errors import UserError
from llm_lit.run.checkpoint import LoadedCheckpoint


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
    from llm_lit.commands.parsing import run_function

    return run_function("llm_lit tokenizer", write_tokenizer, argv)
