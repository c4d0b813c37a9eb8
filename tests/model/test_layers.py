"""From-scratch layers against torch.nn's own, outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llm_lit.model.head import sparse_lookup
from llm_lit.model.layers import Embedding, LayerNorm, Linear, RMSNorm
from llm_lit.model.torch_kernels import TorchLayerNorm, TorchRMSNorm


def _assert_same_forward_backward(ours: nn.Module, theirs: nn.Module, x: torch.Tensor) -> None:
    x1 = x.clone().requires_grad_(x.is_floating_point())
    x2 = x.clone().requires_grad_(x.is_floating_point())
    out1, out2 = ours(x1), theirs(x2)
    torch.testing.assert_close(out1, out2)
    grad = torch.randn_like(out1)
    out1.backward(grad)
    out2.backward(grad)
    for (name, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, msg=name)
    if x.is_floating_point():
        torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_matches_nn_linear(bias: bool) -> None:
    torch.manual_seed(0)
    ours = Linear(16, 24, bias=bias)
    theirs = nn.Linear(16, 24, bias=bias)
    assert ours.weight.shape == (24, 16)
    theirs.load_state_dict(ours.state_dict())
    _assert_same_forward_backward(ours, theirs, torch.randn(3, 5, 16))


def test_linear_init_is_normal_with_init_std() -> None:
    torch.manual_seed(0)
    layer = Linear(512, 512, bias=True, init_std=0.05)
    assert abs(layer.weight.std().item() - 0.05) < 0.002
    assert abs(layer.weight.mean().item()) < 0.002
    assert torch.equal(layer.bias, torch.zeros(512))


def test_embedding_matches_nn_embedding() -> None:
    torch.manual_seed(0)
    ours = Embedding(50, 12)
    theirs = nn.Embedding(50, 12)
    theirs.load_state_dict(ours.state_dict())
    _assert_same_forward_backward(ours, theirs, torch.randint(0, 50, (4, 9)))


def test_sparse_lookup_matches_nn_embedding_sparse() -> None:
    torch.manual_seed(0)
    ours = Embedding(50, 12)
    theirs = nn.Embedding(50, 12, sparse=True)
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 50, (4, 9))  # repeated ids: their rows are summed
    upstream = torch.randn(4, 9, 12)
    out = sparse_lookup(ours.weight, ids)
    torch.testing.assert_close(out, theirs(ids))
    (out * upstream).sum().backward()
    (theirs(ids) * upstream).sum().backward()
    assert ours.weight.grad.is_sparse
    torch.testing.assert_close(ours.weight.grad.to_dense(), theirs.weight.grad.to_dense())


@pytest.mark.parametrize("norm", [RMSNorm, TorchRMSNorm])
def test_rmsnorm_matches_nn_rmsnorm(norm: type) -> None:
    torch.manual_seed(0)
    ours = norm(32, eps=1e-5)
    theirs = nn.RMSNorm(32, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
    theirs.load_state_dict(ours.state_dict())
    _assert_same_forward_backward(ours, theirs, torch.randn(4, 6, 32) * 3)


def test_rmsnorm_computes_in_float32_and_returns_input_dtype() -> None:
    x = torch.randn(4, 32).to(torch.bfloat16)
    for norm in (RMSNorm, TorchRMSNorm):
        out = norm(32)(x)
        assert out.dtype == torch.bfloat16
        expected = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)
        torch.testing.assert_close(out, expected.to(torch.bfloat16))


@pytest.mark.parametrize("norm", [LayerNorm, TorchLayerNorm])
@pytest.mark.parametrize("bias", [False, True])
def test_layernorm_matches_nn_layernorm(norm: type, bias: bool) -> None:
    torch.manual_seed(0)
    ours = norm(32, eps=1e-5, bias=bias)
    theirs = nn.LayerNorm(32, eps=1e-5, bias=bias)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs.load_state_dict(ours.state_dict())
    _assert_same_forward_backward(ours, theirs, torch.randn(4, 6, 32) * 3 + 1)


@pytest.mark.parametrize("pair", ["swiglu", "gelu", "gelu-tanh"])
def test_torch_kernel_mlps_equal_the_reference(pair: str) -> None:
    from llm_lit.model.feedforward import GeluMLP, SwiGLU
    from llm_lit.model.torch_kernels import TorchGeluMLP, TorchSwiGLU

    torch.manual_seed(0)
    if pair == "swiglu":
        ours, theirs = SwiGLU(16, 40, bias=True, init_std=0.5), TorchSwiGLU(16, 40, bias=True)
    else:
        approximate = "tanh" if pair == "gelu-tanh" else "none"
        ours, theirs = GeluMLP(16, 40, bias=True, init_std=0.5, approximate=approximate), \
            TorchGeluMLP(16, 40, bias=True, approximate=approximate)
    theirs.load_state_dict(ours.state_dict())
    _assert_same_forward_backward(ours, theirs, torch.randn(3, 5, 16))
