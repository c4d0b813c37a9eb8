"""What a `LanguageModel` adds to each checkpoint it saves, and takes from each one it loads.

Saved: the `"llm_lit"` section (model config, tokenizer, skipped steps: `checkpoint_section`) and the
train loss's running mean. Loaded: the same, after refusing another architecture, a tokenizer that
differs from the DataModule's, or (in fit) an EMA checkpoint resumed without the EMA.
"""

from __future__ import annotations

from typing import Any

from llm_lit.training.checkpoint_section import (CHECKPOINT_KEY, carried_tokenizer, llm_lit_section,
                                                 require_same_architecture, section_of)
from llm_lit.training.ema import refuse_resume_without_ema
from llm_lit.training.lightning_compat import attached_trainer
from llm_lit.training.nonfinite import refuse_nonfinite_weights
from llm_lit.training.running_mean import TRAIN_LOSS_KEY, restore_running_mean, running_mean_state


def save_into(module: Any, checkpoint: dict[str, Any]) -> None:
    """Write `module`'s (a `LanguageModel`) section and running train loss into `checkpoint`; refuse
    non-finite weights (`refuse_nonfinite_weights`)."""
    trainer = attached_trainer(module)
    if trainer is not None:
        refuse_nonfinite_weights(trainer, module.model)
    checkpoint[CHECKPOINT_KEY] = llm_lit_section(module.config, module.tokenizer, module.skipped_steps)
    gather = module.all_gather if trainer is not None else (lambda value: value)
    checkpoint[TRAIN_LOSS_KEY] = running_mean_state(module.train_loss, gather)


def load_from(module: Any, checkpoint: dict[str, Any]) -> None:
    """Check `checkpoint` against `module` (a `LanguageModel`) and take its step, skipped steps and tokenizer;
    in fit, restore the train loss's running mean too."""
    payload = section_of(checkpoint)
    require_same_architecture(module.config, module.state_dict(), payload.get("model_config"),
                              checkpoint.get("state_dict"))  # (the metrics' states are not saved)
    module.skipped_steps = int(payload.get("skipped_steps", 0))
    module.checkpoint_step = checkpoint.get("global_step")
    trainer = attached_trainer(module)
    if trainer is not None and trainer.state.fn == "fit":
        refuse_resume_without_ema(checkpoint, module.ema.enabled)
        if TRAIN_LOSS_KEY in checkpoint:
            restore_running_mean(module.train_loss, checkpoint[TRAIN_LOSS_KEY], trainer.global_rank,
                                 trainer.world_size)
    tokenizer = carried_tokenizer(module.tokenizer, payload)
    if tokenizer is not None:
        module.set_tokenizer(tokenizer)
