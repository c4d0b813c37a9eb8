"""GELU's tanh approximation (`ModelConfig.gelu_approximate='tanh'`, GPT-2's 'gelu_new') against PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_lit.model import GeluMLP, ModelConfig, ModelConfigError, TorchGeluMLP, TransformerLM
from llm_lit.model.functional import gelu


def test_tanh_gelu_matches_torch():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 4
    torch.testing.assert_close(gelu(x, "tanh"), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(gelu(x), F.gelu(x))
    assert (gelu(x, "tanh") - gelu(x)).abs().max() > 1e-4  # a different function, not a no-op switch


@pytest.mark.parametrize("mlp_class", [TorchGeluMLP, GeluMLP])
def test_gelu_mlp_uses_the_approximation(mlp_class):
    torch.manual_seed(0)
    mlp = mlp_class(16, 64, bias=True, init_std=0.5, approximate="tanh")
    x = torch.randn(3, 5, 16)
    expected = mlp.w2(F.gelu(mlp.w1(x), approximate="tanh"))
    torch.testing.assert_close(mlp(x), expected)


def test_torch_and_reference_models_agree_with_tanh_gelu():
    config = ModelConfig.gpt2(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=4,
                              gelu_approximate="tanh", init_std=0.3)
    torch.manual_seed(0)
    torch_kernels = TransformerLM(config)
    reference = TransformerLM(ModelConfig.from_dict({**config.to_dict(), "kernels": "reference"}))
    reference.load_state_dict(torch_kernels.state_dict())
    exact = TransformerLM(ModelConfig.from_dict({**config.to_dict(), "gelu_approximate": "none"}))
    exact.load_state_dict(torch_kernels.state_dict())
    ids = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(torch_kernels(ids), reference(ids), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(torch_kernels(ids), exact(ids), atol=1e-5)


def test_default_and_validation():
    assert ModelConfig().gelu_approximate == "none"
    old = ModelConfig.gpt2().to_dict()
    del old["gelu_approximate"]  # checkpoints written before the field existed
    assert ModelConfig.from_dict(old).gelu_approximate == "none"
    with pytest.raises(ModelConfigError, match=r"gelu_approximate must be one of none, tanh \(got 'erf'\)"):
        ModelConfig(gelu_approximate="erf")
