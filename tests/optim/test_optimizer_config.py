"""`OptimizerConfig` -> optimizer and scheduler (`build_optimizer`), the module's choice of Muon's
parameters, and every refused setting with its message."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.training.module import LanguageModel
from llm_lit.optim.data_parallel_muon import DataParallelMuon
from llm_lit.optim.muon import muon_matrices
from llm_lit.optim import (SGD, AdamW, InverseTimeSettings, Muon, MuonSettings, OptimizerConfig, OptimizerConfigError,
                           SGDSettings, WsdSettings, build_optimizer, inverse_time_lr_at, lr_at,
                           optimizer_state_elements, param_groups, wsd_lr_at)
from llm_lit.optim.config import schedule_function

GPT2 = ModelConfig.gpt2(vocab_size=31, context_length=8, d_model=16, n_layers=2, n_heads=2)  # tied, biases
LLAMA = ModelConfig.llama(vocab_size=31, context_length=8, d_model=16, n_layers=2, n_heads=2)


def _lrs(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[list[float]]:
    """Every group's lr at steps 0..steps-1."""
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_the_default_config_builds_adamw_with_cosine_as_before() -> None:
    model = TransformerLM(LLAMA)
    optimizer, scheduler = build_optimizer(OptimizerConfig(warmup_steps=5), model, 40)
    assert type(optimizer) is AdamW and optimizer.compile is False
    expected = param_groups(model, 0.1)
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == \
        [[id(p) for p in g["params"]] for g in expected]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    for it, lrs in enumerate(_lrs(optimizer, scheduler, 45)):
        assert lrs == pytest.approx([lr_at(it, 1e-3, 1e-4, 5, 40)] * 2)


def test_sgd_gets_its_settings_and_the_shared_ones() -> None:
    config = OptimizerConfig(name="sgd", lr=0.3, warmup_steps=1, weight_decay=0.01, sgd=SGDSettings(momentum=0.8, nesterov=True))
    optimizer, _ = build_optimizer(config, TransformerLM(GPT2), 10)
    assert type(optimizer) is SGD
    assert [(g["momentum"], g["nesterov"], g["weight_decay"]) for g in optimizer.param_groups] == \
        [(0.8, True, 0.01), (0.8, True, 0.0)]


@pytest.mark.parametrize("model_config", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_muon_takes_the_block_matrices_and_adamw_the_rest(model_config: ModelConfig) -> None:
    model = TransformerLM(model_config)
    config = OptimizerConfig(name="muon", lr=2e-3, min_lr=2e-4, warmup_steps=2, weight_decay=0.05,
                             muon=MuonSettings(lr=0.04, momentum=0.9, nesterov=False, ns_steps=3, ns_dtype="float32"))
    optimizer, scheduler = build_optimizer(config, model, 20, hidden_matrices=muon_matrices(model))
    assert type(optimizer) is Muon
    names = {id(p): n for n, p in model.named_parameters()}
    *adamw_groups, muon_group = optimizer.param_groups
    muon_names = {names[id(p)] for p in muon_group["params"]}
    assert muon_group["muon"] and not any(g["muon"] for g in adamw_groups)
    assert muon_names == {n for n, p in model.named_parameters() if n.startswith("layers.") and p.dim() == 2}
    assert "layers.0.attn.q_proj.weight" in muon_names and "layers.1.ffn.w2.weight" in muon_names
    adamw_names = {names[id(p)] for g in adamw_groups for p in g["params"]}
    assert "token_embeddings.weight" in adamw_names and "ln_final.weight" in adamw_names
    assert not muon_names & adamw_names and len(muon_names) + len(adamw_names) == len(names)
    if not model_config.tie_embeddings:  # the untied head is a decayed AdamW matrix
        assert "lm_head.weight" in {names[id(p)] for p in adamw_groups[0]["params"]}
        assert adamw_groups[0]["weight_decay"] == 0.05
    assert (muon_group["momentum"], muon_group["nesterov"], muon_group["ns_steps"], muon_group["ns_dtype"],
            muon_group["weight_decay"]) == (0.9, False, 3, "float32", 0.05)
    for it, lrs in enumerate(_lrs(optimizer, scheduler, 25)):  # group 0 follows lr, Muon's follows muon.lr
        assert lrs[0] == pytest.approx(lr_at(it, 2e-3, 2e-4, 2, 20))
        assert lrs[-1] == pytest.approx(20 * lr_at(it, 2e-3, 2e-4, 2, 20))


def test_muon_is_refused_for_sharded_parameters() -> None:
    model = TransformerLM(LLAMA)
    with pytest.raises(OptimizerConfigError, match=r"^Muon orthogonalises whole weight matrices, but FSDP shards"):
        build_optimizer(OptimizerConfig(name="muon", warmup_steps=1), model, 10, muon_matrices(model), sharded=True)
    build_optimizer(OptimizerConfig(name="sgd", warmup_steps=1), model, 10, sharded=True)  # the elementwise ones are fine


def test_the_module_wires_muon_and_refuses_it_under_fsdp() -> None:
    module = LanguageModel(LLAMA, OptimizerConfig(name="muon", warmup_steps=1), sample_prompts=[])
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, strategy=DDPStrategy(), world_size=1)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is Muon and len(optimizer.param_groups[-1]["params"]) == 2 * 7
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, strategy=DDPStrategy(), world_size=2)
    assert type(module.configure_optimizers()["optimizer"]) is DataParallelMuon  # the ranks share its work
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, strategy=FSDPStrategy(), world_size=2)
    with pytest.raises(UserError, match="FSDP shards them"):
        module.configure_optimizers()


@pytest.mark.parametrize("schedule, settings, expected", [
    ("wsd", dict(wsd=WsdSettings(decay_fraction=0.25)), lambda it: wsd_lr_at(it, 1e-3, 1e-4, 10, 75, 100)),
    ("wsd", dict(wsd=WsdSettings(decay_fraction=0.3, decay_shape="1-sqrt")),
     lambda it: wsd_lr_at(it, 1e-3, 1e-4, 10, 70, 100, "1-sqrt")),
    ("inverse_time", dict(inverse_time=InverseTimeSettings(decay=0.1)),
     lambda it: inverse_time_lr_at(it, 1e-3, 1e-4, 10, 0.1)),
])
def test_each_schedule_follows_its_formula_over_max_steps(schedule: str, settings: dict, expected) -> None:
    config = OptimizerConfig(schedule=schedule, warmup_steps=10, **settings)
    optimizer, scheduler = build_optimizer(config, TransformerLM(LLAMA), 100)
    for it, lrs in enumerate(_lrs(optimizer, scheduler, 110)):
        assert lrs == pytest.approx([expected(it)] * 2), it


@pytest.mark.parametrize("config, max_steps, warmup, note", [
    (OptimizerConfig(warmup_steps=50), 40, 40,
     "model.optimizer.warmup_steps (50) is longer than this 40-step run has room for: warming up over 40 steps."),
    (OptimizerConfig(schedule="wsd", warmup_steps=30, wsd=WsdSettings(decay_fraction=0.5)), 40, 20,
     "model.optimizer.warmup_steps (30) is longer than this 40-step run has room for: warming up over 20 steps."),
    (OptimizerConfig(schedule="wsd", warmup_steps=50, wsd=WsdSettings(decay_fraction=0.4)), 2, 1,
     "model.optimizer.warmup_steps (50) is longer than this 2-step run has room for: warming up over 1 step."),
])
def test_a_warmup_longer_than_the_run_is_shortened_with_a_note(config: OptimizerConfig, max_steps: int, warmup: int,
                                                              note: str) -> None:
    said = []
    optimizer, scheduler = build_optimizer(config, TransformerLM(LLAMA), max_steps, note=said.append)
    assert said == [note]
    fitted = dataclasses.replace(config, warmup_steps=warmup)
    expected = schedule_function(fitted, max_steps)
    lrs = [lr for lr, *_ in _lrs(optimizer, scheduler, max_steps)]
    assert lrs == pytest.approx([expected(it) for it in range(max_steps)])


@pytest.mark.parametrize("kwargs, message", [
    (dict(sgd=SGDSettings(momentum=0.5)), "sgd.momentum is set (0.5) but applies only with name sgd, not adamw"),
    (dict(name="muon", sgd=SGDSettings(nesterov=True)),
     "sgd.nesterov is set (True) but applies only with name sgd, not muon"),
    (dict(name="sgd", muon=MuonSettings(lr=0.05)), "muon.lr is set (0.05) but applies only with name muon, not sgd"),
    (dict(muon=MuonSettings(ns_dtype="float32")),
     "muon.ns_dtype is set ('float32') but applies only with name muon, not adamw"),
    (dict(wsd=WsdSettings(decay_fraction=0.3)),
     "wsd.decay_fraction is set (0.3) but applies only with schedule wsd, not cosine"),
    (dict(schedule="wsd", inverse_time=InverseTimeSettings(decay=0.5)),
     "inverse_time.decay is set (0.5) but applies only with schedule inverse_time, not wsd"),
    (dict(name="sgd", betas=(0.8, 0.9)), "betas is set ([0.8, 0.9]) but applies only to AdamW (name adamw or muon), not sgd"),
    (dict(name="sgd", eps=1e-6), "eps is set (1e-06) but applies only to AdamW (name adamw or muon), not sgd"),
    (dict(name="sgd", compile=True), "compile is set (True) but applies only to AdamW (name adamw or muon), not sgd"),
    (dict(name="rmsprop"), "name must be adamw, sgd or muon (got 'rmsprop')"),
    (dict(schedule="step"), "schedule must be cosine, wsd or inverse_time (got 'step')"),
    (dict(lr=-1.0), "lr must be >= 0 (got -1.0)"),
    (dict(lr=1e-5), "min_lr must be in [0, lr] (got 0.0001 with lr 1e-05)"),
    (dict(min_lr=-1e-5), "min_lr must be in [0, lr]"),
    (dict(warmup_steps=-1), "warmup_steps must be >= 0 (got -1)"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0 (got -0.1)"),
    (dict(betas=(0.9, 1.0)), "betas must be two numbers in [0, 1) (got [0.9, 1.0])"),
    (dict(eps=-1.0), "eps must be >= 0 (got -1.0)"),
    (dict(name="sgd", sgd=SGDSettings(momentum=1.0)), "sgd.momentum must be in [0, 1) (got 1.0)"),
    (dict(name="sgd", sgd=SGDSettings(momentum=0.0, nesterov=True)), "sgd.nesterov needs sgd.momentum > 0"),
    (dict(name="muon", muon=MuonSettings(lr=-0.1)), "muon.lr must be >= 0 (got -0.1)"),
    (dict(name="muon", muon=MuonSettings(momentum=-0.1)), "muon.momentum must be in [0, 1) (got -0.1)"),
    (dict(name="muon", muon=MuonSettings(ns_steps=0)), "muon.ns_steps must be >= 1 (got 0)"),
    (dict(name="muon", muon=MuonSettings(ns_dtype="float16")),
     "muon.ns_dtype must be one of auto, bfloat16, float32, float64 (got 'float16')"),
    (dict(schedule="wsd", wsd=WsdSettings(decay_fraction=1.5)), "wsd.decay_fraction must be in [0, 1] (got 1.5)"),
    (dict(schedule="wsd", wsd=WsdSettings(decay_shape="cosine")),
     "wsd.decay_shape must be linear or 1-sqrt (got 'cosine')"),
    (dict(schedule="inverse_time", inverse_time=InverseTimeSettings(decay=-1.0)),
     "inverse_time.decay must be >= 0 (got -1.0)"),
])
def test_every_bad_or_inapplicable_setting_is_one_sentence_naming_it(kwargs: dict, message: str) -> None:
    with pytest.raises(OptimizerConfigError) as info:
        OptimizerConfig(**kwargs)
    text = str(info.value)
    assert text.startswith("Invalid model.optimizer settings: ") and text.endswith("; fix these settings and try again.")
    assert message in text and "\n" not in text
    assert isinstance(info.value, UserError)


def test_settings_at_their_defaults_are_accepted_with_any_optimizer_and_schedule() -> None:
    for name in ("adamw", "sgd", "muon"):
        for schedule in ("cosine", "wsd", "inverse_time"):
            OptimizerConfig(name=name, schedule=schedule, sgd=SGDSettings(), muon=MuonSettings(), betas=[0.9, 0.95])


def test_optimizer_state_elements() -> None:
    n, matrices = 1000, 600
    assert optimizer_state_elements(OptimizerConfig(), n, matrices) == 2000
    assert optimizer_state_elements(OptimizerConfig(name="sgd"), n, matrices) == 1000
    assert optimizer_state_elements(OptimizerConfig(name="sgd", sgd=SGDSettings(momentum=0.0)), n, matrices) == 0
    assert optimizer_state_elements(OptimizerConfig(name="muon"), n, matrices) == 600 + 2 * 400


@pytest.mark.parametrize("config", [OptimizerConfig(), OptimizerConfig(name="sgd"),
                                    OptimizerConfig(name="sgd", sgd=SGDSettings(momentum=0.0)),
                                    OptimizerConfig(name="muon")], ids=["adamw", "sgd", "sgd-plain", "muon"])
def test_optimizer_state_elements_count_what_a_step_allocates(config: OptimizerConfig) -> None:
    model = TransformerLM(LLAMA)
    optimizer, _ = build_optimizer(config, model, 200, muon_matrices(model))
    model.loss(torch.randint(0, 31, (2, 8)), torch.randint(0, 31, (2, 8))).backward()
    optimizer.step()
    allocated = sum(t.numel() for state in optimizer.state.values() for t in state.values()
                    if isinstance(t, torch.Tensor))
    n = sum(p.numel() for p in model.parameters())
    assert allocated == optimizer_state_elements(config, n, sum(p.numel() for p in muon_matrices(model)))
