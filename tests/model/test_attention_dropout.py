"""`ModelConfig.attention_dropout`: the attention weights' dropout apart from the embeddings' and residual
branches' (`dropout`); None keeps the old behaviour (one probability for all)."""

from __future__ import annotations

import pytest
import torch

from llm_lit.model.checks import config_differences
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.model.config import ModelConfigError

SHAPE = dict(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4)


@pytest.mark.parametrize("kernels", ["reference", "torch"])
def test_none_means_dropout_and_zero_turns_only_attention_off(kernels: str) -> None:
    same = TransformerLM(ModelConfig(**SHAPE, dropout=0.2, kernels=kernels))
    assert all(block.attn.dropout == 0.2 and block.dropout == 0.2 for block in same.layers)
    apart = TransformerLM(ModelConfig(**SHAPE, dropout=0.2, attention_dropout=0.0, kernels=kernels))
    assert all(block.attn.dropout == 0.0 and block.dropout == 0.2 for block in apart.layers)
    assert ModelConfig(**SHAPE, dropout=0.1, attention_dropout=0.3).attention_dropout_p == 0.3


@pytest.mark.parametrize("kernels", ["reference", "torch"])
def test_the_model_equals_one_whose_attention_dropout_was_set_by_hand(kernels: str) -> None:
    torch.manual_seed(0)
    apart = TransformerLM(ModelConfig(**SHAPE, dropout=0.2, attention_dropout=0.0, kernels=kernels))
    torch.manual_seed(0)
    by_hand = TransformerLM(ModelConfig(**SHAPE, dropout=0.2, kernels=kernels))
    for block in by_hand.layers:
        block.attn.dropout = 0.0
    ids = torch.randint(0, 64, (3, 16))
    torch.manual_seed(1)
    a = apart.loss(ids, ids)
    torch.manual_seed(1)
    b = by_hand.loss(ids, ids)
    assert torch.equal(a, b)
    # the attention itself is deterministic in training mode; the residual dropout is not
    attention = apart.layers[0].attn.train()
    x = torch.randn(2, 16, 32)
    assert torch.equal(attention(x), attention(x))
    torch.manual_seed(2)
    first = apart(ids)
    assert not torch.equal(first, apart(ids))


def test_bad_values_are_refused_and_it_is_runtime_only() -> None:
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(ModelConfigError, match="attention_dropout must be in"):
            ModelConfig(**SHAPE, attention_dropout=bad)
    saved = ModelConfig(**SHAPE, dropout=0.1).to_dict()
    del saved["attention_dropout"]  # a checkpoint written before the setting existed
    assert config_differences(saved, ModelConfig(**SHAPE, dropout=0.1, attention_dropout=0.0).to_dict()) == []
