"""The compiled one-pass AdamW update against the eager foreach path, and its failure message."""

from __future__ import annotations

import pytest
import torch

import llm_lit.optim.adamw as adamw
from llm_lit.errors import UserError
from llm_lit.optim import AdamW
from llm_lit.optim.compiled_update import CompiledUpdateError

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (64, 64), (300, 257)]


@pytest.fixture(autouse=True)
def compile_every_size(monkeypatch) -> None:
    """These tests compare the compiled pass with the eager one on small shapes, so every size compiles
    (by default parameters below `COMPILE_MIN_ELEMENTS` stay eager; the last test covers that)."""
    monkeypatch.setattr(adamw, "COMPILE_MIN_ELEMENTS", 1)


def _twin_params(dtype: torch.dtype, non_contiguous: bool = False, values_of: torch.dtype | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    first = [torch.randn(s, generator=g).to(values_of or dtype).to(dtype) for s in SHAPES]
    if non_contiguous:
        first[0] = torch.randn(5, 7, generator=g).to(dtype).t()  # a leaf with transposed strides
    second = [p.clone().as_strided(p.shape, p.stride()) for p in first]
    return [p.requires_grad_() for p in first], [p.requires_grad_() for p in second]


def _run_twins(dtype: torch.dtype, steps: int, non_contiguous: bool = False, values_of: torch.dtype | None = None):
    """The same `steps` updates by the eager and the compiled AdamW; values (and gradients) are
    rounded to `values_of` first, so a float64 run can follow a bfloat16 one."""
    eager_params, compiled_params = _twin_params(dtype, non_contiguous, values_of)
    eager = AdamW(eager_params, lr=3e-2, weight_decay=0.1)
    compiled = AdamW(compiled_params, lr=3e-2, weight_decay=0.1, compile=True)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        for opt in (eager, compiled):
            opt.param_groups[0]["lr"] = 3e-2 * (1 - step / steps)  # a schedule: new numbers every step
        for a, b in zip(eager_params, compiled_params):
            grad = torch.randn(a.shape, generator=g).to(values_of or dtype).to(dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        if step == 2:
            eager_params[1].grad = compiled_params[1].grad = None  # its step count falls behind the others'
        if step == 1:  # the first step compiled; from here a new learning rate must not recompile
            with torch._dynamo.config.patch(error_on_recompile=True):
                eager.step(), compiled.step()
        else:
            eager.step(), compiled.step()
    return eager_params, compiled_params, eager, compiled


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_compiled_update_equals_the_eager_update(dtype: torch.dtype, tolerance: float) -> None:
    eager_params, compiled_params, eager, compiled = _run_twins(dtype, steps=6)
    for a, b in zip(eager_params, compiled_params):
        assert b.dtype == dtype
        torch.testing.assert_close(b, a, atol=tolerance, rtol=tolerance)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(compiled.state[b][key], eager.state[a][key], atol=tolerance, rtol=tolerance)
        assert compiled.state[b]["step"] == eager.state[a]["step"]
    assert compiled.state[compiled_params[1]]["step"] == 5


def test_one_compiled_loop_serves_every_shape_and_learning_rate() -> None:
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    _run_twins(torch.float32, steps=4)
    # one graph for all sizes (plus one where a size of 1 is specialised); a recompile per shape
    # or per learning rate would count more
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - before <= 2


def test_compiled_update_of_bfloat16_parameters_is_as_close_to_float64_as_the_eager_one() -> None:
    # bfloat16 results differ by an ulp here and there: eager rounds after each of its eight
    # passes, the compiled pass keeps float32 in between and rounds once.
    eager_params, compiled_params, _, _ = _run_twins(torch.bfloat16, steps=6)
    exact, _, _, _ = _run_twins(torch.float64, steps=6, values_of=torch.bfloat16)
    eager_error = sum((a.double() - x).abs().sum() for a, x in zip(eager_params, exact))
    compiled_error = sum((b.double() - x).abs().sum() for b, x in zip(compiled_params, exact))
    for b, x in zip(compiled_params, exact):
        assert b.dtype == torch.bfloat16
        torch.testing.assert_close(b.double(), x, atol=2**-6, rtol=2**-6)
    assert compiled_error <= eager_error


def test_compiled_update_changes_nothing_but_the_speed_of_a_non_contiguous_parameter() -> None:
    eager_params, compiled_params, _, _ = _run_twins(torch.float32, steps=3, non_contiguous=True)
    assert not compiled_params[0].is_contiguous()  # its bucket takes the eager path
    for a, b in zip(eager_params, compiled_params):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)


class _FakeInductorError(RuntimeError):
    __module__ = "torch._inductor.exc"


def test_a_compiler_failure_names_the_setting_to_turn_off(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise _FakeInductorError("CppCompileError: C++ compile error\n  g++: not found")

    monkeypatch.setattr(adamw, "compiled_adamw_update", lambda: broken)
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    with pytest.raises(CompiledUpdateError, match=r"could not build the AdamW update \(CppCompileError.*"
                                                  r"set model\.optimizer\.compile: false") as info:
        AdamW([p], compile=True).step()
    assert isinstance(info.value, UserError)


def test_an_error_that_is_not_the_compilers_passes_through(monkeypatch) -> None:
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(adamw, "compiled_adamw_update", lambda: out_of_memory)
    p = torch.zeros(3, requires_grad=True)
    p.grad = torch.ones(3)
    with pytest.raises(torch.OutOfMemoryError):
        AdamW([p], compile=True).step()


def test_small_parameters_take_the_eager_path_and_large_ones_the_compiled_pass(monkeypatch) -> None:
    monkeypatch.setattr(adamw, "COMPILE_MIN_ELEMENTS", 2**14)  # the default, which the fixture lowered
    compiled_sizes = []
    update = adamw.compiled_adamw_update()

    def spy(*args, **kwargs):
        compiled_sizes.append(args[0].numel())
        update(*args, **kwargs)

    monkeypatch.setattr(adamw, "compiled_adamw_update", lambda: spy)
    g = torch.Generator().manual_seed(0)
    shapes = [(384,), (128, 128), (384, 1536), (1536,), (127, 129)]  # 2**14 = 128 x 128 is the first compiled size
    eager_params = [torch.randn(s, generator=g).requires_grad_() for s in shapes]
    compiled_params = [p.detach().clone().requires_grad_() for p in eager_params]
    eager = AdamW(eager_params, lr=3e-2, weight_decay=0.1)
    compiled = AdamW(compiled_params, lr=3e-2, weight_decay=0.1, compile=True)
    for _ in range(3):
        for a, b in zip(eager_params, compiled_params):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        eager.step(), compiled.step()
    assert compiled_sizes == [128 * 128, 384 * 1536] * 3
    for a, b in zip(eager_params, compiled_params):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
