"""The weights a run starts from (`model.init_from`): read by `llm_lit.run.init_from`, loaded by the module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from llm_lit.model import ModelConfig
from tokenizer import AnyTokenizer


@dataclass
class InitialWeights:
    """The weights, architecture and tokenizer a run starts from (`model.init_from`)."""

    source: str
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Optional[AnyTokenizer]
