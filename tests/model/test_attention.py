"""Attention and positions against PyTorch and hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_lit.errors import UserError
from llm_lit.model import (
    CausalSelfAttention, RotaryEmbedding, TorchSDPAttention, alibi_bias, alibi_slopes, causal_mask,
    scaled_dot_product_attention,
)
from llm_lit.model.positional import SinusoidalPositions, sinusoidal_table


def _qkv(*lead: int, q_len: int = 7, k_len: int = 7, d: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(*lead, q_len, d, generator=g), torch.randn(*lead, k_len, d, generator=g),
            torch.randn(*lead, k_len, d, generator=g))


def test_reference_sdpa_matches_torch_without_and_with_masks() -> None:
    q, k, v = _qkv(2, 3)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    mask = causal_mask(7, 7)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    bias = torch.randn(3, 7, 7).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_reference_sdpa_any_leading_dims_and_rectangular_mask() -> None:
    q, k, v = _qkv(5, q_len=3, k_len=9)
    mask = causal_mask(3, 9)  # the last 3 of 9 positions attend to everything up to themselves
    assert mask.tolist()[0] == [True] * 7 + [False] * 2
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_reference_sdpa_gradients_match_torch() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(2, 2))
    ours = scaled_dot_product_attention(q, k, v, causal_mask(7, 7))
    grads_ours = torch.autograd.grad(ours.sum(), (q, k, v))
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    grads_theirs = torch.autograd.grad(theirs.sum(), (q, k, v))
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_torch_sdpa_attention_equals_reference(n_kv_heads: int) -> None:
    torch.manual_seed(0)
    sdpa = TorchSDPAttention(32, 4, n_kv_heads, bias=True)
    reference = CausalSelfAttention(32, 4, n_kv_heads, bias=True)
    reference.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 9, 32)
    rope = RotaryEmbedding(8).cos_sin(torch.arange(9))
    torch.testing.assert_close(sdpa(x, rope), reference(x, rope))
    sdpa(x, rope).square().sum().backward()
    reference(x, rope).square().sum().backward()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(sdpa.get_parameter(name).grad, param.grad, msg=name)
    bias = alibi_bias(alibi_slopes(4), torch.arange(9), torch.arange(9)).masked_fill(~causal_mask(9, 9), float("-inf"))
    torch.testing.assert_close(sdpa(x, mask=bias, is_causal=False), reference(x, mask=bias, is_causal=False))


def test_attention_rejects_incompatible_heads() -> None:
    with pytest.raises(UserError, match="n_heads \\(5\\) to divide d_model \\(32\\)"):
        CausalSelfAttention(32, 5)
    with pytest.raises(UserError, match="n_kv_heads \\(3\\)"):
        CausalSelfAttention(32, 4, 3)


def test_rope_equals_complex_rotation_of_adjacent_pairs() -> None:
    d, theta = 8, 10000.0
    rope = RotaryEmbedding(d, theta)
    x = torch.randn(2, 3, 5, d)
    positions = torch.tensor([0, 1, 2, 7, 100])
    freqs = theta ** -(torch.arange(0, d, 2).double() / d)
    rotation = torch.polar(torch.ones(5, d // 2, dtype=torch.float64), positions[:, None].double() * freqs)
    expected = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2))) * rotation).flatten(-2)
    torch.testing.assert_close(rope(x, positions), expected.float())
    # Per-row positions: row b rotated by its own positions.
    per_row = torch.stack([positions, positions + 3])
    out = rope(x, per_row)
    torch.testing.assert_close(out[1], rope(x[1:], positions + 3)[0])
    torch.testing.assert_close(rope(x, torch.zeros(5, dtype=torch.long)), x)


def test_rope_rejects_odd_head_size() -> None:
    with pytest.raises(ValueError, match="even head size"):
        RotaryEmbedding(7)


def test_alibi_slopes_follow_the_paper() -> None:
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** -(2 * (i + 1)) for i in range(4)]))
    # 6 heads: the 4-head slopes, then every other 8-head slope.
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]))


def test_alibi_bias_is_minus_slope_times_distance() -> None:
    bias = alibi_bias(torch.tensor([0.5, 0.25]), torch.arange(4), torch.arange(4))
    assert bias.shape == (2, 4, 4)
    assert bias[0, 3, 0].item() == -1.5 and bias[1, 2, 1].item() == -0.25 and bias[0, 2, 2].item() == 0.0
    batched = alibi_bias(torch.tensor([0.5, 0.25]), torch.arange(4).expand(3, 4), torch.arange(4).expand(3, 4))
    assert batched.shape == (3, 2, 4, 4)
    torch.testing.assert_close(batched[2], bias)


def test_sinusoidal_table_values_and_growth() -> None:
    table = sinusoidal_table(50, 8)
    pos, i = 13, 2
    angle = pos / 10000 ** (2 * i / 8)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    module = SinusoidalPositions(10, 8)
    torch.testing.assert_close(module(torch.tensor([3, 40])), table[[3, 40]])
    assert module.state_dict() == {}
