"""The run plan (`llm_lit.run.plan`): the parsed config and what it names in, a `RunPlan` out. No Trainer, no
subprocess, no file: the checkpoint and init_from weights are built in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig
from llm_lit.run.checkpoint import LoadedCheckpoint
from llm_lit.run.folders import Run
from llm_lit.run.plan import DEFAULT_MAX_STEPS, RunInputs, RunLength, plan_length, plan_run
from llm_lit.training.initial_weights import InitialWeights
from tokenizer import CharTokenizer

RUN = Run(Path("runs"), "debug")
VERSION = RUN.folder / "version_0"
CKPT = str(VERSION / "checkpoints" / "last.ckpt")
TOKENIZER = CharTokenizer("abc", ["<|endoftext|>"])
MODEL = ModelConfig(vocab_size=4, context_length=8, d_model=8, n_layers=1, n_heads=1)


# ---------------------------------------------------------------------- run length
@pytest.mark.parametrize("trainer, given, stride, expected", [
    ({}, None, None, RunLength(DEFAULT_MAX_STEPS, None, DEFAULT_MAX_STEPS)),
    ({"max_steps": 30}, 30, None, RunLength(30, None, 30)),
    ({"max_epochs": -1}, 30, None, RunLength(30, None, 30)),  # -1: no epoch limit, a run of steps
    ({"max_epochs": 3}, None, None, RunLength(-1, 3, None)),  # epochs alone: no step cap
    ({"max_epochs": 3}, -1, 64, RunLength(-1, 3, None)),
    ({"max_epochs": 3, "max_steps": 2000}, 2000, 64, RunLength(2000, 3, 2000)),  # a given max_steps caps them
    ({"fast_dev_run": True}, None, None, RunLength(DEFAULT_MAX_STEPS, None, 1)),
    ({"fast_dev_run": 4, "max_epochs": 2}, None, None, RunLength(-1, 2, 4)),
], ids=["default", "steps", "no-epoch-limit", "epochs", "epochs-uncapped", "epochs-capped", "fast_dev_run",
        "fast_dev_run-epochs"])
def test_the_run_length(trainer, given, stride, expected):
    length = plan_length(trainer, given, stride)
    assert length == expected
    assert length.in_epochs == (expected.max_epochs is not None)


@pytest.mark.parametrize("trainer, given, stride, message", [
    ({}, None, 16, "data.stride (16) applies only to epochs of windows"),
    ({"max_epochs": -1}, None, 16, "data.stride (16) applies only to epochs of windows"),
    ({"max_epochs": 0}, None, None, "trainer.max_epochs must be a positive number of epochs (got 0)"),
    ({"max_epochs": 2}, 0, None, "Set trainer.max_steps"),
    ({}, -1, None, "Set trainer.max_steps"),
])
def test_run_lengths_that_cannot_work_are_one_line(trainer, given, stride, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_length(trainer, given, stride)


# ---------------------------------------------------------------------- the whole plan
def _checkpoint(config: ModelConfig = MODEL, tokenizer: Optional[CharTokenizer] = TOKENIZER) -> LoadedCheckpoint:
    payload = {"model_config": config.to_dict(), "tokenizer": tokenizer.to_dict() if tokenizer else None}
    return LoadedCheckpoint(Path(CKPT), None, {"llm_lit": payload, "state_dict": {}})


def _initial(config: ModelConfig = MODEL, tokenizer: Optional[CharTokenizer] = TOKENIZER) -> InitialWeights:
    return InitialWeights("source.ckpt", config, {}, tokenizer)


def _config(**top: Any) -> dict[str, Any]:
    return {"trainer": {"max_steps": 30}, "model": {"config": {"d_model": 64, "dropout": 0.1}}, "data": {}, **top}


OTHER = ModelConfig(vocab_size=4, context_length=8, d_model=16, n_layers=1, n_heads=1)
CARRIED = {"tokenizer_path": None, "tokenizer_kind": "bpe", "unk_token": None}

# (subcommand, inputs, expected: subset of the plan's fields, and `model_config`'s d_model / dropout)
CASES = {
    "fresh fit": ("fit", RunInputs(RUN, version=VERSION),
                  dict(length=RunLength(30, None, 30), version=VERSION, resume=None, settings={},
                       tokenizer_source="data", tokenizer=None, initial_weights=None)),
    "resumed fit": ("fit", RunInputs(RUN, CKPT, _checkpoint(OTHER), version=VERSION),
                    dict(resume=CKPT, settings={}, tokenizer_source="data", tokenizer=None)),  # the config's model
    "fit from init_from": ("fit", RunInputs(RUN, initial_weights=_initial(), version=VERSION),
                           dict(tokenizer_source="init_from", tokenizer=TOKENIZER, model=(8, 0.1),
                                data={"vocab_size": 4, **CARRIED})),
    "init_from without tokenizer": ("fit", RunInputs(RUN, initial_weights=_initial(tokenizer=None), version=VERSION),
                                    dict(tokenizer_source="data", tokenizer=None, model=(8, 0.1),
                                         data={"vocab_size": 4})),
    "validate": ("validate", RunInputs(RUN, CKPT, _checkpoint()),
                 dict(length=None, version=None, resume=CKPT, tokenizer_source="checkpoint", model=(8, 0.0),
                      data={"vocab_size": 4, **CARRIED})),
    "validate, the checkpoint over init_from": ("validate", RunInputs(RUN, CKPT, _checkpoint(OTHER), _initial()),
                                                dict(tokenizer_source="checkpoint", model=(16, 0.0),
                                                     data={"vocab_size": 4, **CARRIED})),
    "predict of a checkpoint without tokenizer": ("predict", RunInputs(RUN, CKPT, _checkpoint(tokenizer=None)),
                                                  dict(tokenizer_source="data", tokenizer=None, model=(8, 0.0),
                                                       data={"vocab_size": 4})),
    "test of 'best'": ("test", RunInputs(RUN, "best"), dict(resume="best", settings={}, tokenizer_source="data")),
}


@pytest.mark.parametrize("case", CASES)
def test_the_plan(case):
    subcommand, inputs, expected = CASES[case]
    expected = dict(expected)
    plan = plan_run(subcommand, _config(), inputs)
    assert plan.subcommand == subcommand and plan.run == RUN
    model = expected.pop("model", None)
    data = expected.pop("data", None)
    for name, value in expected.items():
        assert getattr(plan, name) == value, name
    if model is None:
        assert plan.model_config is None
    else:
        assert (plan.model_config["d_model"], plan.model_config["dropout"]) == model
        assert plan.settings["data"] == data
    if plan.tokenizer_source == "checkpoint":
        assert plan.tokenizer.to_dict() == inputs.checkpoint.payload["tokenizer"]


def test_the_plan_takes_the_given_max_steps_and_the_time_budget():
    config = {**_config(time_budget=60.0), "trainer": {"max_steps": DEFAULT_MAX_STEPS, "max_epochs": 2}}
    epochs = plan_run("fit", config, RunInputs(RUN, version=VERSION), max_steps_given=False)
    assert epochs.length == RunLength(-1, 2, None) and epochs.time_budget == 60.0
    capped = plan_run("fit", config, RunInputs(RUN, version=VERSION), max_steps_given=True)
    assert capped.length == RunLength(DEFAULT_MAX_STEPS, 2, DEFAULT_MAX_STEPS)
    assert plan_run("validate", config, RunInputs(RUN, CKPT, _checkpoint())).time_budget is None


@pytest.mark.parametrize("budget", [0.0, -5.0, float("inf")])
def test_a_bad_time_budget_is_one_line(budget):
    with pytest.raises(UserError, match="time_budget must be a positive number of seconds"):
        plan_run("fit", _config(time_budget=budget), RunInputs(RUN, version=VERSION))


def test_the_plan_is_frozen():
    plan = plan_run("fit", _config(), RunInputs(RUN, version=VERSION))
    with pytest.raises(AttributeError):
        plan.resume = "other.ckpt"


# ---------------------------------------------------------------------- the CLI carries the plan out
class _Planned(Exception):
    pass


@pytest.mark.parametrize("flags, length", [
    ([], RunLength(DEFAULT_MAX_STEPS, None, DEFAULT_MAX_STEPS)),
    (["--trainer.max_epochs", "2"], RunLength(-1, 2, None)),  # the default max_steps does not cap epochs
    (["--trainer.max_epochs", "2", "--trainer.max_steps", str(DEFAULT_MAX_STEPS)],
     RunLength(DEFAULT_MAX_STEPS, 2, DEFAULT_MAX_STEPS)),  # a given one does, even when it equals the default
], ids=["steps", "epochs", "epochs-capped"])
def test_the_cli_plans_from_what_was_given(tmp_path, monkeypatch, flags, length):
    from llm_lit.commands.lightning_cli import LLMLitCLI

    class PlanOnly(LLMLitCLI):
        def before_instantiate_classes(self) -> None:
            raise _Planned(self.plan, self.config.fit.trainer.max_steps)

    monkeypatch.chdir(tmp_path)
    with pytest.raises(_Planned) as planned:
        PlanOnly(args=["fit", *flags])
    plan, max_steps = planned.value.args
    assert plan.length == length and max_steps == length.max_steps
    assert plan.run == Run(Path("runs"), "tinyshakespeare") and plan.version == Path("runs/tinyshakespeare/version_0")


def test_help_shows_the_real_default_of_max_steps(capsys):
    from llm_lit.commands.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"default: {DEFAULT_MAX_STEPS})" in text.split("--trainer.max_steps MAX_STEPS", 2)[-1][:600]
    assert "-2" not in text.split("--trainer.max_steps MAX_STEPS", 2)[-1][:600]
