"""The run planned once: what a command will do, decided in one pure function before anything is built.

    parse (LightningCLI) -> read what the config names (`read_inputs`) -> plan (`plan_run`) -> carry it out

`read_inputs` does the reading a plan needs, once: the run folder's versions, the `--ckpt_path`
file (`last` resolved) and the `--model.init_from` weights. `plan_run` turns the parsed config and
those inputs into a frozen `RunPlan`, with no side effect: how long the run lasts (steps or epochs,
decided here and nowhere else), which architecture and tokenizer it uses (the config's, or those of
the checkpoint or init_from weights), where its files go, what it resumes, what it starts from, and
its time budget. `LLMLitCLI`'s hooks only carry the plan out.

Run length, for `fit`:

* without `trainer.max_epochs` the run is `trainer.max_steps` optimizer steps on random windows
  (`DEFAULT_MAX_STEPS` unless given); `-1` is refused (the schedule's length comes from it);
* with `trainer.max_epochs N` the run is N epochs of fixed windows (`data.stride` apart), capped by
  `trainer.max_steps` only when that is given (as in Lightning); `data.stride` needs epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from llm_lit.data.datamodule import STRIDE_NEEDS_EPOCHS
from llm_lit.errors import UserError
from llm_lit.run.checkpoint import (CHECKPOINT_DEFINES_MODEL, LoadedCheckpoint, checkpoint_settings, read_given_checkpoint,
                                   require_weights)
from llm_lit.run.folders import Run, fit_version, resolve_last
from llm_lit.run.init_from import init_settings, read_initial_weights
from llm_lit.run.placement import Machine, cpu_data_parallel
from llm_lit.training.budget import check_time_budget
from llm_lit.training.guards import require_max_steps
from llm_lit.training.initial_weights import InitialWeights
from tokenizer import AnyTokenizer

#: Optimizer steps of a fit that names neither trainer.max_steps nor trainer.max_epochs (the parser's default).
DEFAULT_MAX_STEPS = 2000
#: Subcommands that train, and so have a run length and a version folder (None: `LLMLitCLI(run=False)`).
TRAINING = ("fit", None)


@dataclass(frozen=True)
class RunLength:
    """How long a fit lasts, as the Trainer is given it.

    Args:
        max_steps: Optimizer steps that end the run; -1 for none (the epochs end it).
        max_epochs: Epochs that end the run, or None for a run of steps on random windows.
        known_steps: The run's optimizer steps known before any data is read, or their cap
            (`trainer.max_steps`, `trainer.fast_dev_run`'s steps); None for epochs without a cap.
    """

    max_steps: int
    max_epochs: Optional[int] = None
    known_steps: Optional[int] = None

    @property
    def in_epochs(self) -> bool:
        """Whether the run trains epoch by epoch over fixed windows (else on endless random windows)."""
        return self.max_epochs is not None


@dataclass(frozen=True)
class RunInputs:
    """What a parsed config names, read once by `read_inputs`: the plan's only input besides the config.

    Args:
        run: The run the config names (`--out_dir`/`--run_name`, or its config files and corpus).
        ckpt_path: `--ckpt_path`, with `last` resolved to the run's newest `last.ckpt` (None: none).
        checkpoint: That file, read (None for none, or a name Lightning resolves itself such as `best`).
        initial_weights: The `--model.init_from` weights, read (None without init_from).
        version: The version folder a fit writes to: its checkpoint's, else the run's next one (None
            for validate, test and predict, which create none).
        machine: The cores and accelerator of the machine the run is on (`placement.Machine.this_one()`).
    """

    run: Run
    ckpt_path: Optional[str] = None
    checkpoint: Optional[LoadedCheckpoint] = None
    initial_weights: Optional[InitialWeights] = None
    version: Optional[Path] = None
    machine: Machine = Machine(cores=1, has_accelerator=False)


@dataclass(frozen=True)
class RunPlan:
    """Everything a command decides about its run before any class is built (see the module docstring).

    Args:
        subcommand: fit, validate, test or predict (None: `LLMLitCLI(run=False)`, built as for fit).
        length: The run length (None for validate, test and predict, which do not train).
        run: The run folder (`<out_dir>/<run_name>`).
        version: The version folder a fit writes to (None for the others).
        resume: The checkpoint to resume or evaluate (`--ckpt_path`, `last` resolved), or None.
        checkpoint: That file, read once at parse time (handed to the checkpoint IO, which then does not read it
            again); None when there is none or Lightning resolves the name itself.
        settings: Settings the checkpoint or the init_from weights impose on the config, as nested dicts
            (`{"model": {"config": ...}, "data": {...}}`; empty when none): their architecture and vocabulary.
        tokenizer_source: Where the tokenizer comes from: the data settings ('data': trained or loaded by the
            DataModule), the init_from weights ('init_from') or the checkpoint ('checkpoint').
        tokenizer: The tokenizer handed to the DataModule in memory (None when the data settings make it).
        initial_weights: The weights the model starts from (`--model.init_from`; a checkpoint resumed or
            evaluated is restored over them), or None.
        time_budget: Wall-clock seconds for a fit (`--time_budget`), or None.
        placement: Trainer settings that put a CPU fit on every core (`placement.cpu_data_parallel`: devices and
            strategy), or empty when the config's own stand.
    """

    subcommand: Optional[str]
    length: Optional[RunLength]
    run: Run
    version: Optional[Path] = None
    resume: Optional[str] = None
    checkpoint: Optional[LoadedCheckpoint] = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    tokenizer_source: Literal["data", "init_from", "checkpoint"] = "data"
    tokenizer: Optional[AnyTokenizer] = None
    initial_weights: Optional[InitialWeights] = None
    time_budget: Optional[float] = None
    placement: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_config(self) -> Optional[dict[str, Any]]:
        """The architecture imposed by the checkpoint or init_from weights, or None (the config's own stands)."""
        return self.settings.get("model", {}).get("config")


def read_inputs(subcommand: Optional[str], config: Any) -> RunInputs:
    """Read what a subcommand's parsed `config` names: the run folder's versions, the `--ckpt_path` file and
    the `--model.init_from` weights (`UserError` in one line for a missing or bad one)."""
    run = Run.from_config(config)
    machine = Machine.this_one()
    if subcommand is None:
        return RunInputs(run, version=fit_version(run, None), machine=machine)
    ckpt_path = resolve_last(run, subcommand, config.get("ckpt_path"))
    init_from = config.model.get("init_from") if "model" in config else None
    initial = read_initial_weights(init_from) if init_from else None
    checkpoint = read_given_checkpoint(ckpt_path)  # a bad file stops here, in one line
    version = fit_version(run, ckpt_path) if subcommand in TRAINING else None
    return RunInputs(run, ckpt_path, checkpoint, initial, version, machine)


def plan_run(subcommand: Optional[str], config: Mapping[str, Any], inputs: RunInputs,
             max_steps_given: bool = True) -> RunPlan:
    """The plan of `subcommand` from its parsed config (a nested dict) and what that config names (`inputs`).

    `max_steps_given` says whether the user gave `trainer.max_steps` (in a config file or a flag) rather than
    leaving it at its default: it tells an epoch run capped by max_steps from one whose steps are unset.
    Pure: reads nothing, changes nothing.
    """
    trainer = config.get("trainer") or {}
    length, budget = None, None
    if subcommand in TRAINING:
        given = trainer.get("max_steps") if max_steps_given else None
        length = plan_length(trainer, given, (config.get("data") or {}).get("stride"))
        _check_training_settings(trainer)
        budget = config.get("time_budget")
        check_time_budget(budget)
    require_weights(subcommand, inputs.ckpt_path, inputs.initial_weights)
    settings: dict[str, Any] = {}
    source, tokenizer = "data", None
    initial = inputs.initial_weights
    if initial is not None:  # its architecture and vocabulary; its tokenizer replaces the data's
        configured = ((config.get("model") or {}).get("config")) or {}
        settings = _merged(settings, init_settings(initial, dict(configured)))
        if initial.tokenizer is not None:
            source, tokenizer = "init_from", initial.tokenizer
    checkpoint = inputs.checkpoint
    if checkpoint is not None and subcommand in CHECKPOINT_DEFINES_MODEL:
        # the checkpoint defines the architecture and tokenizer; config files need not repeat them
        settings = _merged(settings, checkpoint_settings(checkpoint))
        carried = checkpoint.tokenizer()
        if carried is not None:
            source, tokenizer = "checkpoint", carried
    return RunPlan(subcommand, length, inputs.run, inputs.version, inputs.ckpt_path, checkpoint, settings, source,
                   tokenizer, initial, budget, cpu_data_parallel(subcommand, trainer, inputs.machine))


def plan_length(trainer: Mapping[str, Any], given_max_steps: Optional[int], stride: Optional[int]) -> RunLength:
    """The length of a fit from its trainer settings (`max_epochs`, `max_steps`, `fast_dev_run`), the
    `max_steps` the user gave (None: not given) and `data.stride`; `UserError` for values that cannot work."""
    epochs = trainer.get("max_epochs")
    in_epochs = epochs is not None and epochs != -1  # -1: Lightning's "no epoch limit"
    if not in_epochs and stride is not None:
        raise UserError(STRIDE_NEEDS_EPOCHS.format(stride=stride))
    if in_epochs:
        if epochs < 1:
            raise UserError(f"trainer.max_epochs must be a positive number of epochs (got {epochs}); pass e.g. "
                            "--trainer.max_epochs 3, or leave it unset to train for trainer.max_steps.")
        max_steps = -1 if given_max_steps in (None, -1) else require_max_steps(given_max_steps)
    else:
        max_steps = require_max_steps(DEFAULT_MAX_STEPS if given_max_steps is None else given_max_steps)
    known = max_steps if max_steps > 0 else None
    dev_run = trainer.get("fast_dev_run")
    if dev_run:  # Lightning runs this many steps whatever max_steps says
        known = 1 if dev_run is True else int(dev_run)
    return RunLength(max_steps, epochs if in_epochs else None, known)


def _check_training_settings(trainer: Mapping[str, Any]) -> None:
    """Refuse trainer settings that cannot work with the model's: Lightning's gradient clipping (the model clips).
    (The optimizer fits the schedule to the run's steps.)"""
    if trainer.get("gradient_clip_val") is not None:
        raise UserError("Gradient clipping is set by --model.grad_clip; remove --trainer.gradient_clip_val.")


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` laid over it, nested dicts merged key by key (`top` wins)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged
