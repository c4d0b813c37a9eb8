"""The Lightning messages a user of llm_lit cannot act on, silenced one by one, each with the reason.

Only these exact messages are hidden; every other warning and message still shows. (One more,
"`weights_only` was not set", is avoided at its source: the checkpoint written on Ctrl-C asks for
a full checkpoint explicitly, see `llm_lit.run.interrupts.InterruptCheckpoint`.)
"""

from __future__ import annotations

import logging
import re
import warnings

# Logged by Lightning's rank-zero helpers (`rank_zero_info`); Fabric's is the same helper.
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")

# An advertisement for a cloud service, printed by every Trainer; there is nothing to fix.
LITLOGGER_TIP = r"Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\]"

# Lightning's own pytree helper builds torch's deprecated `LeafSpec` (Lightning's code, not ours: a
# later Lightning release drops it, and nothing in llm_lit or in a user's config can change it).
PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"

# The checkpoint folder of a resumed run holds that run's checkpoints, as intended (a fresh fit gets a
# new, empty version folder, so this is only said about the resume itself; see llm_lit.run.folders).
RESUME_FOLDER_NOT_EMPTY = r"Checkpoint directory .* exists and is not empty\."

# Restoring a checkpoint callback's state into another folder (validate/test/predict, which keep no
# checkpoints, or a run folder that was moved) only forgets where earlier best/last files were; the
# files stay where they are and nothing is lost.
DIRPATH_CHANGED = r"The dirpath has changed from .* won't be reloaded"

# Under DDP, val/* and test/* (loss, ppl, bpb) are reduced over all ranks by torchmetrics before they
# are logged (`EvaluationHooks._log_eval`; each source's too), so every rank logs the same, exact
# value: sync_dist would only average equal numbers again.
EVAL_SYNC_DIST = r"It is recommended to use `self\.log\('(val|test)/([^']+/)?(loss|ppl|bpb)', \.\.\., sync_dist=True\)`"

# Logged at each validation, the same on every rank by construction: `epoch` (a function of the loop's counters),
# `time/elapsed_s` (rank 0's clock, logged by rank 0 only) and a multiple-choice eval's eval/<name>/acc and
# acc_norm (each rank's counts summed over all ranks first); averaging them over ranks would change nothing.
RUN_SYNC_DIST = (r"It is recommended to use `self\.log\('(epoch|time/elapsed_s|eval/[^']+/(acc|acc_norm))', \.\.\., "
                 r"sync_dist=True\)`")

# Our validation IterableDataset has an exact __len__ (it never uses workers), so this warning is noise.
ITERABLE_WITH_LEN = r".*IterableDataset.*has `__len__` defined"

# validate/test/predict evaluate a checkpoint without the training callbacks whose states it holds (the time budget,
# the checkpoint callbacks), and a resumed fit rebuilds every callback from the run's config: the states that
# find no callback (a budget dropped with --time_budget null) are meant to go unused.
CKPT_CALLBACKS_MISSING = r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need"

# The model summary only misstates the size in MB of a mixed-precision model (the weights are fp32 anyway).
SUMMARY_PRECISION = r"Precision .* is not supported by the model summary"

# Under DDP, Lightning's own all_gather helper (lightning.fabric.utilities.distributed) calls torch's deprecated
# function, once per process: Lightning's code, which nothing in llm_lit or in a config can change.
ALL_GATHER_DEPRECATION = r"torch\.distributed\.nn\.functional\.all_gather is deprecated"

# `llm_lit.commands.cli.main(argv)` called from Python (tests, notebooks) passes arguments on purpose.
CLI_ARGS_FROM_PYTHON = r".*LightningCLI's args parameter is intended"


class _DropMessages(logging.Filter):
    """A logging filter that drops the records whose message matches one of `patterns`."""

    def __init__(self, *patterns: str) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(p.search(record.getMessage()) for p in self.patterns)


def silence_lightning_noise(args_from_python: bool = False) -> None:
    """Hide the messages above that every run prints (idempotent: filters are added once)."""
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(LITLOGGER_TIP))
    warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION, category=FutureWarning)
    warnings.filterwarnings("ignore", message=DIRPATH_CHANGED)
    warnings.filterwarnings("ignore", message=EVAL_SYNC_DIST)
    warnings.filterwarnings("ignore", message=RUN_SYNC_DIST)
    warnings.filterwarnings("ignore", message=ITERABLE_WITH_LEN)
    warnings.filterwarnings("ignore", message=CKPT_CALLBACKS_MISSING)
    warnings.filterwarnings("ignore", message=SUMMARY_PRECISION)
    warnings.filterwarnings("ignore", message=ALL_GATHER_DEPRECATION)
    if args_from_python:
        warnings.filterwarnings("ignore", message=CLI_ARGS_FROM_PYTHON)


def silence_resume_noise() -> None:
    """Hide "checkpoint directory not empty" for a run that resumes into its own checkpoint folder."""
    warnings.filterwarnings("ignore", message=RESUME_FOLDER_NOT_EMPTY)
