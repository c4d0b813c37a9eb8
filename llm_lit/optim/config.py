"""`OptimizerConfig` (`model.optimizer` on the command line) and how it becomes an optimizer and a
learning-rate scheduler.

    model:
      optimizer:
        name: muon            # adamw | sgd | muon
        schedule: wsd         # cosine | wsd | inverse_time
        lr: 0.003             # the shared settings: lr, min_lr, warmup_steps, weight_decay
        muon: {lr: 0.02}      # settings of one optimizer or schedule live under its name
        wsd: {decay_fraction: 0.2}

A setting under `sgd`, `muon`, `wsd` or `inverse_time`, or AdamW's `betas`, `eps` and `compile`, that
is changed from its default while the optimizer or schedule it belongs to is not chosen is refused
(one sentence naming it) rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from llm_lit.optim.adamw import AdamW, OptimizerConfigError, param_groups
from llm_lit.optim.data_parallel_muon import DataParallelMuon
from llm_lit.optim.muon import NS_DTYPES, SHARDED_REFUSAL, Muon
from llm_lit.optim.schedule import WsdShape, inverse_time_lr_at, lr_at, peak_relative_scheduler, wsd_lr_at
from llm_lit.optim.sgd import SGD

OptimizerName = Literal["adamw", "sgd", "muon"]
ScheduleName = Literal["cosine", "wsd", "inverse_time"]
NsDtype = Literal["auto", "bfloat16", "float32", "float64"]


@dataclass
class SGDSettings:
    """Settings of model.optimizer.name sgd (refused with another optimizer).

    Args:
        momentum: Momentum coefficient mu in [0, 1): the step follows b <- mu b + g (0: plain SGD, no buffer, 4 fewer bytes per parameter).
        nesterov: Nesterov momentum: step along g + mu b instead of b (needs momentum > 0).
    """

    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class MuonSettings:
    """Settings of model.optimizer.name muon (refused with another optimizer); its AdamW part uses model.optimizer.lr, betas, eps.

    Args:
        lr: Peak learning rate of the hidden weight matrices (the schedule scales it in step with model.optimizer.lr).
        momentum: Momentum coefficient mu in [0, 1) of the matrices' update (b <- mu b + (1 - mu) g).
        nesterov: Orthogonalise (1 - mu) g + mu b instead of the buffer b.
        ns_steps: Newton-Schulz steps per update (5 puts the singular values in [0.47, 1.21]).
        ns_dtype: Dtype of the Newton-Schulz iteration: auto (bfloat16 on GPUs and CPUs with bfloat16 arithmetic, float32 on other CPUs, where emulated bfloat16 is several times slower), bfloat16, float32 or float64.
    """

    lr: float = 0.02
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    ns_dtype: NsDtype = "auto"


@dataclass
class WsdSettings:
    """Settings of model.optimizer.schedule wsd (refused with another schedule).

    Args:
        decay_fraction: Fraction of trainer.max_steps spent in the final decay from lr to min_lr (rounded to whole steps); between warmup and the decay lr stays flat.
        decay_shape: How lr falls during the decay: 'linear', or '1-sqrt' (1 - sqrt(progress): faster at first).
    """

    decay_fraction: float = 0.2
    decay_shape: WsdShape = "linear"


@dataclass
class InverseTimeSettings:
    """Settings of model.optimizer.schedule inverse_time (refused with another schedule).

    Args:
        decay: d in lr / (1 + d t), t counting optimizer steps from the end of warmup.
    """

    decay: float = 0.01


@dataclass
class OptimizerConfig:
    """The optimizer and its learning-rate schedule (length: trainer.max_steps).

    Args:
        name: 'adamw' for every parameter; 'sgd' for every parameter (see sgd.*); 'muon': Muon for the 2-D weight matrices inside the transformer blocks, AdamW for embeddings, output head, norms and biases (see muon.*).
        schedule: After a linear warmup: 'cosine' down to min_lr at trainer.max_steps; 'wsd' (warmup-stable-decay) flat at lr, then down to min_lr over the last wsd.decay_fraction of the run; 'inverse_time' lr / (1 + inverse_time.decay * t), never below min_lr.
        lr: Peak learning rate, reached at the end of warmup (with muon: of the AdamW parameters; muon.lr is the matrices').
        min_lr: Lowest learning rate: where cosine and wsd end, and inverse_time's floor (muon.lr is scaled by min_lr / lr).
        warmup_steps: Optimizer steps of linear warmup from 0 to lr.
        weight_decay: Decoupled weight decay, p <- p (1 - lr * weight_decay) each step, of weight matrices and an untied output head (norms, biases and embeddings are not decayed); with muon the matrices decay with muon.lr.
        betas: AdamW's moment decay rates (adamw, and muon's AdamW part).
        eps: AdamW's denominator epsilon (adamw, and muon's AdamW part).
        compile: Update each AdamW parameter in one torch.compile'd pass instead of eight eager passes (about 2.5x faster optimizer steps on a CPU; the first step compiles for a few seconds; adamw and muon's AdamW part).
        sgd: Settings of name sgd only (refused with another optimizer when changed).
        muon: Settings of name muon only (refused with another optimizer when changed).
        wsd: Settings of schedule wsd only (refused with another schedule when changed).
        inverse_time: Settings of schedule inverse_time only (refused with another schedule when changed).
    """

    name: OptimizerName = "adamw"
    schedule: ScheduleName = "cosine"
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    compile: bool = False
    sgd: SGDSettings = field(default_factory=SGDSettings)
    muon: MuonSettings = field(default_factory=MuonSettings)
    wsd: WsdSettings = field(default_factory=WsdSettings)
    inverse_time: InverseTimeSettings = field(default_factory=InverseTimeSettings)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        problems = _value_problems(self) + _inapplicable_settings(self)
        if problems:
            raise OptimizerConfigError("Invalid model.optimizer settings: " + "; ".join(problems)
                                       + "; fix these settings and try again.")


def _value_problems(c: OptimizerConfig) -> list[str]:
    """Values out of range, one phrase each (those AdamW, SGD and Muon would refuse, named as settings)."""
    problems = []
    if c.name not in ("adamw", "sgd", "muon"):
        problems.append(f"name must be adamw, sgd or muon (got {c.name!r})")
    if c.schedule not in ("cosine", "wsd", "inverse_time"):
        problems.append(f"schedule must be cosine, wsd or inverse_time (got {c.schedule!r})")
    if not c.lr >= 0:
        problems.append(f"lr must be >= 0 (got {c.lr})")
    if not 0 <= c.min_lr <= max(c.lr, 0):
        problems.append(f"min_lr must be in [0, lr] (got {c.min_lr} with lr {c.lr})")
    if c.warmup_steps < 0:
        problems.append(f"warmup_steps must be >= 0 (got {c.warmup_steps})")
    if not c.weight_decay >= 0:
        problems.append(f"weight_decay must be >= 0 (got {c.weight_decay})")
    if len(c.betas) != 2 or not all(0 <= b < 1 for b in c.betas):
        problems.append(f"betas must be two numbers in [0, 1) (got {list(c.betas)})")
    if not c.eps >= 0:
        problems.append(f"eps must be >= 0 (got {c.eps})")
    if not 0 <= c.sgd.momentum < 1:
        problems.append(f"sgd.momentum must be in [0, 1) (got {c.sgd.momentum})")
    if c.sgd.nesterov and c.sgd.momentum == 0:
        problems.append("sgd.nesterov needs sgd.momentum > 0")
    if not c.muon.lr >= 0:
        problems.append(f"muon.lr must be >= 0 (got {c.muon.lr})")
    if not 0 <= c.muon.momentum < 1:
        problems.append(f"muon.momentum must be in [0, 1) (got {c.muon.momentum})")
    if c.muon.ns_steps < 1:
        problems.append(f"muon.ns_steps must be >= 1 (got {c.muon.ns_steps})")
    if c.muon.ns_dtype not in NS_DTYPES:
        problems.append(f"muon.ns_dtype must be one of {', '.join(NS_DTYPES)} (got {c.muon.ns_dtype!r})")
    if not 0 <= c.wsd.decay_fraction <= 1:
        problems.append(f"wsd.decay_fraction must be in [0, 1] (got {c.wsd.decay_fraction})")
    if c.wsd.decay_shape not in ("linear", "1-sqrt"):
        problems.append(f"wsd.decay_shape must be linear or 1-sqrt (got {c.wsd.decay_shape!r})")
    if not c.inverse_time.decay >= 0:
        problems.append(f"inverse_time.decay must be >= 0 (got {c.inverse_time.decay})")
    return problems


def _inapplicable_settings(c: OptimizerConfig) -> list[str]:
    """Settings changed from their defaults that the chosen optimizer or schedule would not use."""
    problems = []
    for section, owner, chosen in (("sgd", "name", c.name), ("muon", "name", c.name),
                                   ("wsd", "schedule", c.schedule), ("inverse_time", "schedule", c.schedule)):
        if chosen == section:
            continue
        for key, value in _changed(getattr(c, section)):
            problems.append(f"{section}.{key} is set ({value!r}) but applies only with {owner} {section}, "
                            f"not {chosen}")
    if c.name == "sgd":
        defaults = OptimizerConfig.__dataclass_fields__
        for key in ("betas", "eps", "compile"):
            default = defaults[key].default
            if getattr(c, key) != default:
                problems.append(f"{key} is set ({_plain(getattr(c, key))!r}) but applies only to AdamW "
                                "(name adamw or muon), not sgd")
    return problems


def _changed(settings: Any) -> list[tuple[str, Any]]:
    """`(field, value)` of each field of a settings dataclass that differs from its default."""
    default = type(settings)()
    return [(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)
            if getattr(settings, f.name) != getattr(default, f.name)]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------- building
def build_optimizer(config: OptimizerConfig, model: nn.Module, max_steps: int, hidden_matrices: Sequence[Tensor] = (),
                    sharded: bool = False, data_parallel: bool = False,
                    horizon: Optional[Callable[[int], int]] = None, note: Callable[[str], None] = lambda line: None,
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over `model`'s trainable parameters and its scheduler (step it once per optimizer step).

    Parameters are split by `param_groups` into decayed matrices and the rest. With muon,
    `hidden_matrices` (chosen by the caller: the 2-D weights inside the transformer blocks) go to
    Muon and everything else to AdamW; the AdamW groups come first, so group 0's lr is
    `config.lr`'s schedule for every optimizer.

    Args:
        config: the optimizer and schedule settings.
        model: the module whose parameters are trained.
        max_steps: optimizer steps of the run: the schedule's length.
        hidden_matrices: Muon's parameters (with muon), each 2-D.
        sharded: the parameters are sharded (FSDP), which Muon refuses.
        data_parallel: the run has several data-parallel ranks (DDP): Muon's ranks share its Newton–Schulz work
            (`DataParallelMuon`, bitwise the same updates).
        horizon: `step -> planned number of steps` when the run's length is not known in advance (a time
            budget): the schedule is then re-planned at every step (see `schedule_function`).
        note: where a line about a setting fitted to the run goes (a warmup longer than the run, `fitted_to_run`).
    """
    if sharded and config.name == "muon":
        raise OptimizerConfigError(SHARDED_REFUSAL)
    groups = param_groups(model, config.weight_decay)
    if config.name == "adamw":
        optimizer = AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
                          compile=config.compile)
    elif config.name == "sgd":
        optimizer = SGD(groups, lr=config.lr, momentum=config.sgd.momentum, nesterov=config.sgd.nesterov,
                        weight_decay=config.weight_decay)
    else:
        optimizer = _muon(config, groups, hidden_matrices, DataParallelMuon if data_parallel else Muon)
    return optimizer, peak_relative_scheduler(optimizer, schedule_function(config, max_steps, horizon, note), config.lr)


def _muon(config: OptimizerConfig, groups: list[dict[str, Any]], hidden_matrices: Sequence[Tensor],
          kind: type[Muon] = Muon) -> Muon:
    """Muon (of class `kind`) over `hidden_matrices`, AdamW over the rest of `groups` (each keeping its weight decay)."""
    matrices = {id(p): p for p in hidden_matrices if p.requires_grad}
    adamw_groups = [{**g, "params": [p for p in g["params"] if id(p) not in matrices], "muon": False} for g in groups]
    muon_groups = [{"params": list(matrices.values()), "muon": True}] if matrices else []
    m = config.muon
    return kind([g for g in adamw_groups if g["params"]] + muon_groups, lr=m.lr, momentum=m.momentum,
                nesterov=m.nesterov, ns_steps=m.ns_steps, ns_dtype=m.ns_dtype, weight_decay=config.weight_decay,
                adamw_lr=config.lr, betas=config.betas, eps=config.eps, compile=config.compile)


def schedule_function(config: OptimizerConfig, max_steps: int, horizon: Optional[Callable[[int], int]] = None,
                      note: Callable[[str], None] = lambda line: None) -> Callable[[int], float]:
    """`step -> lr` of the configured schedule over `max_steps` optimizer steps (peak `config.lr`).

    With `horizon`, the run's length is re-planned at every step: the lr at step `it` is that of the
    schedule over `H = horizon(it)` steps, with `H` kept between the shortest run the schedule accepts
    (the warmup, and with wsd the decay after it) and `max_steps`. A constant `horizon` gives exactly the
    schedule over that many steps.
    """
    config = fitted_to_run(config, max_steps, note)
    fixed = _fixed_schedule(config, max_steps)  # checks the settings against the longest possible run
    if horizon is None:
        return fixed
    shortest = _shortest_run(config, max_steps)
    return lambda it: _fixed_schedule(config, min(max_steps, max(shortest, horizon(it))))(it)


def fitted_to_run(config: OptimizerConfig, max_steps: int,
                  note: Callable[[str], None] = lambda line: None) -> OptimizerConfig:
    """`config` with its warmup shortened to the room a run of `max_steps` steps has for it (all of it; with wsd,
    the steps before the decay), saying so in one line to `note`: a smoke test (`--trainer.max_steps 2`,
    `--trainer.fast_dev_run true`) of a config made for long runs warms up over what there is."""
    room = max_steps - (round(config.wsd.decay_fraction * max_steps) if config.schedule == "wsd" else 0)
    if config.warmup_steps <= room:
        return config
    note(f"model.optimizer.warmup_steps ({config.warmup_steps}) is longer than this {max_steps}-step run has "
         f"room for: warming up over {max(room, 0)} step{'' if room == 1 else 's'}.")
    return dataclasses.replace(config, warmup_steps=max(room, 0))


def _shortest_run(config: OptimizerConfig, max_steps: int) -> int:
    """The fewest steps (at most `max_steps`) whose schedule `_fixed_schedule` accepts."""
    c = config
    if c.schedule != "wsd":
        return min(c.warmup_steps, max_steps)
    return next((n for n in range(c.warmup_steps, max_steps)
                 if n - round(c.wsd.decay_fraction * n) >= c.warmup_steps), max_steps)


def _fixed_schedule(config: OptimizerConfig, max_steps: int) -> Callable[[int], float]:
    """`step -> lr` of the configured schedule over exactly `max_steps` steps; refuses settings that do not fit."""
    c = config
    if c.warmup_steps > max_steps:
        raise OptimizerConfigError(f"model.optimizer.warmup_steps ({c.warmup_steps}) is longer than the run "
                                   f"(trainer.max_steps {max_steps}); shorten the warmup or train longer.")
    if c.schedule == "cosine":
        return lambda it: lr_at(it, c.lr, c.min_lr, c.warmup_steps, max_steps)
    if c.schedule == "inverse_time":
        return lambda it: inverse_time_lr_at(it, c.lr, c.min_lr, c.warmup_steps, c.inverse_time.decay)
    decay_start = max_steps - round(c.wsd.decay_fraction * max_steps)
    if decay_start < c.warmup_steps:
        raise OptimizerConfigError(
            f"The wsd decay (the last {max_steps - decay_start} of trainer.max_steps {max_steps} steps, "
            f"model.optimizer.wsd.decay_fraction {c.wsd.decay_fraction}) overlaps the warmup "
            f"(model.optimizer.warmup_steps {c.warmup_steps}); lower one of them.")
    return lambda it: wsd_lr_at(it, c.lr, c.min_lr, c.warmup_steps, decay_start, max_steps, c.wsd.decay_shape)


def optimizer_state_elements(config: OptimizerConfig, parameters: int, hidden_matrix_parameters: int) -> int:
    """Elements of optimizer state (each the size of a parameter element) for a model of `parameters`
    parameters, `hidden_matrix_parameters` of them in the matrices Muon would take.

    AdamW keeps two moments per parameter; SGD one momentum buffer (none without momentum);
    Muon one buffer per matrix element and AdamW's two moments for everything else.
    """
    if config.name == "adamw":
        return 2 * parameters
    if config.name == "sgd":
        return parameters if config.sgd.momentum > 0 else 0
    return hidden_matrix_parameters + 2 * (parameters - hidden_matrix_parameters)
