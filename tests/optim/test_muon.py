"""Muon: the Newton–Schulz iteration against its SVD formula and its singular-value band, the whole update
against a direct implementation and torch.optim.Muon, its AdamW groups against torch.optim.AdamW, state round
trip, refusals."""

from __future__ import annotations

import math
import platform

import pytest
import torch
from torch import nn

from llm_lit.errors import UserError
from llm_lit.optim import Muon, OptimizerConfigError, orthogonalise
from llm_lit.optim.muon import NS_COEFFICIENTS

SHAPES = [(16, 48), (48, 16), (24, 24), (1, 9)]


def _f(s: torch.Tensor, steps: int) -> torch.Tensor:
    """The quintic applied `steps` times to singular values."""
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def svd_orthogonalise(update: torch.Tensor, steps: int) -> torch.Tensor:
    """The Newton–Schulz result by its closed form: `P diag(f^steps(s / (||U||_F + 1e-7))) Q^T`."""
    p, s, qt = torch.linalg.svd(update.double(), full_matrices=False)
    return p @ torch.diag(_f(s / (update.double().norm() + 1e-7), steps)) @ qt


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("steps", [1, 5, 8])
def test_newton_schulz_equals_its_svd_formula(shape: tuple[int, int], steps: int) -> None:
    g = torch.Generator().manual_seed(0)
    update = torch.randn(shape, generator=g, dtype=torch.float64) * 3.0
    torch.testing.assert_close(orthogonalise(update, steps, torch.float64), svd_orthogonalise(update, steps),
                               atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (96, 160)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_five_steps_bring_every_singular_value_of_a_gradient_like_matrix_near_one(shape, dtype) -> None:
    update = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 1e-3
    result = orthogonalise(update, 5, dtype)
    assert result.dtype == dtype and result.shape == shape
    singular_values = torch.linalg.svdvals(result.double())
    # the band the quintic keeps singular values in once they are near 1 (bfloat16 rounds a little wider)
    assert singular_values.min() > 0.65 and singular_values.max() < 1.15, singular_values
    exact = svd_orthogonalise(update, 5)
    assert (result.double() - exact).norm() / exact.norm() < (1e-5 if dtype == torch.float32 else 0.06)  # bfloat16: 8 bits of mantissa


def test_the_quintic_maps_the_unit_interval_into_its_band() -> None:
    s = torch.logspace(-3, 0, 200_001, dtype=torch.float64)
    after5 = _f(s, 5)
    assert after5.min() > 0.47 and after5.max() < 1.21  # as muon.py's NS_COEFFICIENTS comment says
    inside = torch.linspace(0.68, 1.14, 10_001, dtype=torch.float64)
    assert _f(inside, 1).min() >= 0.68 and _f(inside, 1).max() <= 1.14  # and the band [0.68, 1.14] is kept


def test_a_zero_update_stays_zero() -> None:
    assert torch.equal(orthogonalise(torch.zeros(4, 6), 5, torch.float32), torch.zeros(4, 6))


def _model_params(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in [*SHAPES, (7,), (5, 3)]]


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_update_equals_a_direct_implementation(nesterov: bool) -> None:
    """Muon groups against the textbook form (momentum as a running sum `B <- mu B + G`, the Nesterov
    `G + mu B`, the orthogonal factor by SVD), AdamW groups against torch.optim.AdamW."""
    lr, adamw_lr, mu, wd, steps = 0.02, 3e-3, 0.95, 0.1, 8
    params = _model_params(0)
    matrices, others = params[:4], params[4:]
    twins = [p.detach().clone().requires_grad_() for p in others]
    muon = Muon([{"params": others, "muon": False, "weight_decay": 0.05}, {"params": matrices}], lr=lr, momentum=mu,
                nesterov=nesterov, ns_steps=5, ns_dtype="float64", weight_decay=wd, adamw_lr=adamw_lr)
    reference_adamw = torch.optim.AdamW(twins, lr=adamw_lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    expected = [p.detach().clone() for p in matrices]
    sums = [torch.zeros_like(p) for p in matrices]
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p, twin in zip(others, twins):
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
            twin.grad = p.grad.clone()
        for i, p in enumerate(matrices):
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
            sums[i] = mu * sums[i] + p.grad
            update = p.grad + mu * sums[i] if nesterov else sums[i]
            rows, cols = p.shape
            expected[i] = expected[i] * (1 - lr * wd) - lr * math.sqrt(max(1, rows / cols)) * svd_orthogonalise(update, 5)
        muon.step()
        reference_adamw.step()
    for p, e in zip(matrices, expected):  # not closer: the sum and the average differ in the 1e-7 of the normalisation
        torch.testing.assert_close(p.detach(), e, atol=1e-8, rtol=1e-6)
    for p, twin in zip(others, twins):
        torch.testing.assert_close(p, twin, atol=1e-12, rtol=1e-12)
    assert muon.param_groups[0]["lr"] == adamw_lr and muon.param_groups[1]["lr"] == lr


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon arrived in torch 2.9")
def test_muon_in_bfloat16_is_bitwise_torch_optim_muon(nesterov: bool) -> None:
    ours_params = [p.detach().float().requires_grad_() for p in _model_params(3)[:4]] + \
        [torch.randn(32, 96, generator=torch.Generator().manual_seed(4)).requires_grad_()]
    torch_params = [p.detach().clone().requires_grad_() for p in ours_params]
    kwargs = dict(lr=0.02, momentum=0.95, nesterov=nesterov, weight_decay=0.1, ns_steps=5)
    ours = Muon(ours_params, ns_dtype="bfloat16", **kwargs)
    theirs = torch.optim.Muon(torch_params, **kwargs)
    g = torch.Generator().manual_seed(5)
    for _ in range(10):
        for a, b in zip(ours_params, torch_params):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        ours.step(), theirs.step()
    assert all(torch.equal(a, b) for a, b in zip(ours_params, torch_params))


def test_muon_with_bfloat16_newton_schulz_stays_close_to_float64() -> None:
    runs = {}
    for dtype in ("float64", "bfloat16"):
        params = [p.detach().float().requires_grad_() for p in _model_params(0)[:3]]
        muon = Muon(params, lr=0.02, ns_dtype=dtype)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            muon.step()
        runs[dtype] = params
    start = _model_params(0)[:3]
    for low, exact, first in zip(runs["bfloat16"], runs["float64"], start):
        moved = (exact.double() - first).norm()
        assert moved > 0.05 and (low - exact).double().norm() < 0.05 * moved


def test_state_dict_round_trip_continues_bitwise() -> None:
    straight, resumed = [p.detach().float().requires_grad_() for p in _model_params(0)], \
        [p.detach().float().requires_grad_() for p in _model_params(0)]

    def build(params: list[torch.Tensor]) -> Muon:
        return Muon([{"params": params[4:], "muon": False}, {"params": params[:4]}], lr=0.02, weight_decay=0.1)

    first, second = build(straight), build(resumed)
    g = torch.Generator().manual_seed(1)
    for step in range(8):
        for a, b in zip(straight, resumed):
            a.grad = torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
        first.step(), second.step()
        if step == 3:  # rebuilt from its saved state (through a file, weights only), as on resume
            saved = second.state_dict()
            second = build(resumed)
            second.load_state_dict(saved)
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))
    assert {"momentum_buffer"} == set(first.state[straight[0]])
    assert {"step", "exp_avg", "exp_avg_sq"} == set(first.state[straight[4]])


def test_compile_runs_the_adamw_groups_through_the_compiled_update(monkeypatch) -> None:
    import llm_lit.optim.adamw as adamw
    from llm_lit.optim.compiled_update import adamw_update_

    calls = []

    def spy(*args, **kwargs):  # the uncompiled function: same math, no compiler needed
        calls.append(args[0].shape)
        adamw_update_(*args, **kwargs)

    monkeypatch.setattr(adamw, "compiled_adamw_update", lambda: spy)
    monkeypatch.setattr(adamw, "COMPILE_MIN_ELEMENTS", 1)  # these test parameters are small
    params = [p.detach().float().requires_grad_() for p in _model_params(0)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    compiled = Muon([{"params": params[4:], "muon": False}, {"params": params[:4]}], compile=True)
    eager = Muon([{"params": twins[4:], "muon": False}, {"params": twins[:4]}])
    for p, twin in zip(params, twins):
        p.grad = torch.ones_like(p)
        twin.grad = torch.ones_like(twin)
    compiled.step(), eager.step()
    assert len(calls) == 2  # the two AdamW parameters; the matrices are Muon's
    for p, twin in zip(params, twins):
        torch.testing.assert_close(p, twin, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), r"lr must be >= 0 \(got -1.0\)"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (dict(ns_steps=0), "ns_steps must be an integer >= 1"),
    (dict(ns_dtype="float16"), "ns_dtype must be one of auto, bfloat16, float32, float64"),
    (dict(adamw_lr=-1.0), r"adamw_lr must be >= 0"),
    (dict(betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\)"),
])
def test_muon_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(OptimizerConfigError, match=message) as info:
        Muon([torch.zeros(2, 2, requires_grad=True)], **kwargs)
    assert isinstance(info.value, UserError)


def test_muon_refuses_a_parameter_that_is_not_a_matrix() -> None:
    with pytest.raises(OptimizerConfigError, match=r"2-D matrices only, but got a parameter of shape \(4,\)"):
        Muon([torch.zeros(4, requires_grad=True)])


def test_muon_refuses_sparse_gradients() -> None:
    p = torch.zeros(4, 2, requires_grad=True)
    p.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(OptimizerConfigError, match="sparse gradients"):
        Muon([p]).step()


def test_muon_refuses_sharded_dtensor_parameters() -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        sharded = nn.Parameter(distribute_tensor(torch.randn(4, 4), mesh, [Shard(0)]))
        with pytest.raises(OptimizerConfigError, match="FSDP shards them across devices; train with "
                                                       "--trainer.strategy ddp"):
            Muon([sharded])
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("flags, expected", [
    (frozenset({"avx2", "avx512f"}), torch.float32),        # bfloat16 only emulated: float32 is faster
    (frozenset({"avx512f", "avx512_bf16"}), torch.bfloat16),
    (frozenset({"amx_bf16", "amx_tile"}), torch.bfloat16),
    (frozenset({"fp", "asimd", "bf16"}), torch.bfloat16),  # Arm's BF16 extension
    (frozenset(), torch.float32),                           # no /proc/cpuinfo
])
def test_auto_ns_dtype_is_bfloat16_only_on_cpus_that_have_it(monkeypatch, flags, expected) -> None:
    import llm_lit.optim.muon as muon

    monkeypatch.setattr(muon, "cpu_flags", lambda: flags)
    assert muon.ns_dtype_on("auto", torch.device("cpu")) == expected
    assert muon.ns_dtype_on("float64", torch.device("cpu")) == torch.float64  # a named dtype is kept as it is
    seen = []
    monkeypatch.setattr(Muon, "orthogonalised", lambda self, updates, steps, dtype: seen.append(dtype) or updates)
    p = torch.zeros(4, 3, requires_grad=True)
    p.grad = torch.ones(4, 3)
    Muon([p]).step()  # the default is auto
    assert seen == [expected]


def test_cpu_flags_reads_this_machines_cpuinfo() -> None:
    from llm_lit.optim.muon import cpu_flags

    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in flags  # every x86-64 CPU has it
