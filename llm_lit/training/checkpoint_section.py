"""The `"llm_lit"` section of every checkpoint: format version, model config and tokenizer as plain data.

It is what makes a checkpoint self-contained: `LanguageModel.on_save_checkpoint` writes it, and
`llm_lit.run.checkpoint` reads it back to rebuild the model and tokenizer from the file alone.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig
from llm_lit.model.checks import config_differences, state_dict_mismatch
from tokenizer import AnyTokenizer, tokenizer_from_dict

CHECKPOINT_KEY = "llm_lit"


CHECKPOINT_VERSION = 1


SUPPORTED_VERSIONS = (CHECKPOINT_VERSION,)


def llm_lit_section(config: ModelConfig, tokenizer: Optional[AnyTokenizer], skipped_steps: int = 0) -> dict[str, Any]:
    """The `"llm_lit"` section of a checkpoint: format version, model config and tokenizer as plain data."""
    return {
        "version": CHECKPOINT_VERSION,
        "model_config": config.to_dict(),
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "skipped_steps": skipped_steps,
    }


def same_tokenizer(tokenizer: AnyTokenizer, saved: dict[str, Any]) -> bool:
    """Whether the tokenizer dict of a checkpoint is `tokenizer`: equal dicts (cheap), else equal
    fingerprints (the same tokenizer written in another version of the format)."""
    return tokenizer.to_dict() == saved or tokenizer.fingerprint() == tokenizer_from_dict(saved).fingerprint()


def section_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The `"llm_lit"` section of a loaded checkpoint; `UserError` for a checkpoint llm_lit did not write."""
    section = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(section, dict):
        raise UserError("This checkpoint was not written by llm_lit (it has no 'llm_lit' section); "
                        "pass a checkpoint saved by llm_lit fit.")
    return section


def require_same_architecture(config: ModelConfig, expected: dict[str, torch.Tensor], saved_config: Any,
                              saved: Optional[dict[str, torch.Tensor]], init_from: Optional[str] = None) -> None:
    """Refuse, in one sentence, weights written by another architecture than `config` (`saved_config`, a model
    config dict) or whose state dict `saved` does not fit `expected`: a checkpoint's, or with `init_from` (its
    path) the weights a run starts from."""
    differences = config_differences(saved_config, config.to_dict()) if isinstance(saved_config, dict) else []
    if differences:
        detail = "; ".join(differences[:3])
        raise UserError(f"model.init_from '{init_from}' has another architecture ({detail}); leave model.config to the "
                        "source (the CLI applies it) or pass a source of this model." if init_from else
                        f"The checkpoint was written by another architecture ({detail}); use the model settings it "
                        "was trained with, or a checkpoint of this model.")
    problem = state_dict_mismatch(expected, saved) if saved is not None else None
    if problem:
        raise UserError(f"The weights of model.init_from '{init_from}' do not fit this model ({problem}); pass an "
                        "unmodified checkpoint or model folder." if init_from else
                        f"The checkpoint's weights do not fit this model ({problem}); pass an unmodified checkpoint "
                        "written by llm_lit fit for this architecture.")


def carried_tokenizer(tokenizer: Optional[AnyTokenizer], section: dict[str, Any]) -> Optional[AnyTokenizer]:
    """The tokenizer a model whose tokenizer is `tokenizer` takes from a checkpoint's `section`: the saved one when
    it has none, else None (the same one: nothing to take); `UserError` when the two differ."""
    saved = section.get("tokenizer")
    if saved is None or tokenizer is None:
        return tokenizer_from_dict(saved) if saved is not None else None
    if not same_tokenizer(tokenizer, saved):
        raise UserError("The checkpoint's tokenizer differs from the data's tokenizer; use the same data settings as "
                        "the run that wrote the checkpoint (or the checkpoint's tokenizer).")
    return None
