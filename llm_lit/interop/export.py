"""Export a model to a Hugging Face folder that `transformers` loads with no code of ours.

    llm_lit export --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --output hf_model/
    python -m llm_lit.interop.export --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --output hf_model/

Which layout a config exports to (everything else is refused with the reason):

    position  norm      ffn     other                                   -> transformers class
    rope      rmsnorm   swiglu  any bias, tying, n_kv_heads             -> LlamaForCausalLM
    learned   layernorm gelu    bias=True, n_kv_heads == n_heads        -> GPT2LMHeadModel

Either way without qk_norm, embedding_scale, logit_scale or logit_softcap, which neither class
computes (zero_init_residual is only an initialisation and exports like any other model).

The folder holds `config.json`, `model.safetensors` (written by our own safetensors writer),
`generation_config.json`, and the tokenizer as `tokenizer.json` + `vocab.json` + `merges.txt`
+ `tokenizer_config.json`. It is built in a temporary folder beside the output and renamed
into place at the end, so a failed export never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Literal

import torch

from llm_lit.errors import UserError
from llm_lit.interop import hf_gpt2, hf_llama
from llm_lit.interop.hf_tokenizer import end_of_text_id, hf_role_ids, write_hf_tokenizer, write_json
from llm_lit.interop.safetensors_io import save_file
from llm_lit.model import BigramLM, ModelConfig, TransformerLM
from tokenizer import BPETokenizer

Layout = Literal["llama", "gpt2"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_layout(config: ModelConfig) -> Layout:
    """The Hugging Face layout `config` exports to: 'llama' or 'gpt2'; `UserError` saying why when none fits."""
    c = config
    extras = [f"{name}={value!r} ({what})" for name, value, off, what in (
        ("qk_norm", c.qk_norm, False, "RMSNorm of queries and keys"),
        ("embedding_scale", c.embedding_scale, 1.0, "a multiplier on the token embeddings"),
        ("logit_scale", c.logit_scale, 1.0, "a multiplier on the logits"),
        ("logit_softcap", c.logit_softcap, None, "tanh capping of the logits"),
    ) if value != off]
    if extras:
        raise UserError(
            f"{'; '.join(extras)} has no counterpart in LlamaForCausalLM or GPT2LMHeadModel, so transformers would "
            "compute other logits from the exported weights; train without it to export to the Hugging Face layout."
        )
    if c.position in ("alibi", "sinusoidal", "none"):
        raise UserError(
            f"position='{c.position}' has no counterpart in LlamaForCausalLM (RoPE) or GPT2LMHeadModel (learned "
            "positions), so this model cannot be exported to the Hugging Face layout; train with position='rope' or 'learned'."
        )
    if c.position == "rope":
        if c.norm != "rmsnorm" or c.ffn != "swiglu":
            raise UserError(
                f"A RoPE model exports as LlamaForCausalLM, which needs norm='rmsnorm' and ffn='swiglu' but this one has "
                f"norm='{c.norm}' and ffn='{c.ffn}'; train with the llama preset to export it."
            )
        return "llama"
    wrong = [f"{name}={value!r}" for name, value, want in
             (("norm", c.norm, "layernorm"), ("ffn", c.ffn, "gelu"), ("bias", c.bias, True)) if value != want]
    if c.n_kv_heads != c.n_heads:
        wrong.append(f"n_kv_heads={c.n_kv_heads} (n_heads={c.n_heads})")
    if wrong:
        raise UserError(
            "A model with learned positions exports as GPT2LMHeadModel, which needs norm='layernorm', ffn='gelu', "
            f"bias=True and n_kv_heads == n_heads but this one has {', '.join(wrong)}; train with the gpt2 preset to export it."
        )
    return "gpt2"


def hf_files(model: TransformerLM, tokenizer: BPETokenizer | None) -> tuple[dict, dict[str, torch.Tensor]]:
    """`(config.json dict, safetensors tensors)` of `model` in its Hugging Face layout."""
    layout = hf_layout(model.config)
    module = hf_llama if layout == "llama" else hf_gpt2
    eot = end_of_text_id(tokenizer) if tokenizer is not None else None
    config = module.to_hf_config(model.config, eot)
    if tokenizer is not None:
        config.update(hf_role_ids(tokenizer))  # the special-token roles (BOS / EOS / PAD)
    return config, module.to_hf_state_dict(model.state_dict(), model.config)


def export_hf(model: TransformerLM, tokenizer: BPETokenizer | None, out_dir: str | os.PathLike,
              overwrite: bool = False, dtype: str = "float32") -> Path:
    """Write `model` (and `tokenizer`) as a Hugging Face model folder at `out_dir`; returns its path.

    Args:
        model: the model to export; its config decides the layout (see `hf_layout`).
        tokenizer: written as `tokenizer.json` etc.; None writes the weights only.
        out_dir: the folder to create; an existing non-empty folder needs `overwrite=True`.
        overwrite: replace an existing folder.
        dtype: 'float32', 'bfloat16' or 'float16' for the stored weights.
    """
    if isinstance(model, BigramLM):
        raise UserError("A bigram model (a table of next-token logits) has no Llama or GPT-2 counterpart in Hugging Face; "
                        "export a model with model.config.architecture transformer.")
    if not isinstance(model, TransformerLM):
        raise UserError(f"export_hf needs a TransformerLM, got {type(model).__name__}; pass the model itself (e.g. module.model).")
    if dtype not in _DTYPES:
        raise UserError(f"dtype must be one of {', '.join(_DTYPES)} (got {dtype!r}); pick one of them.")
    if tokenizer is not None and not isinstance(tokenizer, BPETokenizer):
        raise UserError(f"The model's tokenizer is {type(tokenizer).__name__} (character-level), which has no counterpart in "
                        "Hugging Face's GPT-2 or Llama tokenizers (they are byte-level BPE), so AutoTokenizer could not load "
                        "it; export a model trained with data.tokenizer_kind bpe, or call export_hf with tokenizer=None for "
                        "the weights alone.")
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(
            f"The tokenizer has {tokenizer.vocab_size} ids but the model only {model.config.vocab_size}; "
            "export the tokenizer the model was trained with."
        )
    config, tensors = hf_files(model, tokenizer)
    config["torch_dtype"] = dtype
    tensors = {k: v.to(_DTYPES[dtype]) for k, v in tensors.items()}
    with staged_folder(out_dir, overwrite) as staging:
        save_file(tensors, staging / "model.safetensors", metadata={"format": "pt"})
        write_json(staging / "config.json", config)
        write_json(staging / "generation_config.json", _generation_config(config))
        if tokenizer is not None:
            write_hf_tokenizer(tokenizer, staging, model.config.context_length)
    return Path(out_dir).expanduser()


def _generation_config(config: dict) -> dict:
    """bos / eos / pad ids: transformers' `generate` stops at the eos and pads uneven batches with the pad."""
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {k: config[k] for k in keys if config.get(k) is not None or k != "pad_token_id"}


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder beside `out_dir`; on success it replaces `out_dir`, on error it is removed.

    Refuses (UserError) a destination that is a file, or a non-empty folder unless `overwrite`.
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"The destination {out_dir} is a file; pass a folder path.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"The output folder {out_dir} already exists and is not empty; pass overwrite=True (--overwrite true) or another folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private (0700); the export gets the mode mkdir gives
    try:
        yield staging
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename the finished staging folder onto `out_dir` (the old folder is removed only after success)."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out_dir)

