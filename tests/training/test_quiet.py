"""`llm_lit.training.quiet` hides exactly the named Lightning messages: each is gone, and other warnings still show.

(That a real fit, a Ctrl-C and a resume print none of them is tested end to end in
tests/faults/test_quiet_runs.py, and under DDP in tests/training/test_lit_distributed.py.)"""

from __future__ import annotations

import logging
import warnings

import pytest

from llm_lit.training.quiet import silence_lightning_noise, silence_resume_noise

# The messages as Lightning 2.6 and torch print them.
NOISE = [
    ("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` "
     "instead.", FutureWarning),
    ("The dirpath has changed from '/a/checkpoints' to '/b/checkpoints', therefore `best_model_score`, "
     "`kth_best_model_path`, `kth_value`, `last_model_path` and `best_k_models` won't be reloaded. Only "
     "`best_model_path` will be reloaded.", UserWarning),
    *[(f"It is recommended to use `self.log('val/{name}', ..., sync_dist=True)` when logging on epoch level in "
       "distributed setting to accumulate the metric across devices.", UserWarning) for name in ("loss", "ppl", "bpb")],
    ("Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided during "
     "`Trainer` instantiation. Please add the following callbacks: ['TimeBudget']", UserWarning),
    ("Precision bf16-mixed is not supported by the model summary.  Estimated model size in MB will not be accurate. "
     "Using 32 bits instead.", UserWarning),
    ("torch.distributed.nn.functional.all_gather is deprecated, use "
     "torch.distributed._functional_collectives.all_gather_single instead.", FutureWarning),
]
TIP = ("💡 Tip: For seamless cloud logging and experiment tracking, try installing "
       "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics and artifacts "
       "automatically to the Lightning Experiments platform.")


def _shown(message: str, category: type[Warning]) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_lightning_noise()
        silence_resume_noise()
        warnings.warn(message, category)
    return bool(caught)


@pytest.mark.parametrize("message, category", NOISE, ids=["pytree", "dirpath", "sync-loss", "sync-ppl", "sync-bpb",
                                                                "ckpt-callbacks", "summary-precision", "all-gather"])
def test_each_named_warning_is_hidden(message, category):
    assert not _shown(message, category)


def test_checkpoint_folder_not_empty_is_hidden_once_resuming():
    assert not _shown("Checkpoint directory /r/version_0/checkpoints exists and is not empty.", UserWarning)


@pytest.mark.parametrize("message, category", [
    ("It is recommended to use `self.log('train/mine', ..., sync_dist=True)` when logging on epoch level in "
     "distributed setting to accumulate the metric across devices.", UserWarning),  # a user's own metric
    ("`isinstance(treespec, LeafSpec)` is deprecated", UserWarning),  # same words, another category
    ("Something else entirely.", UserWarning),
])
def test_other_warnings_still_show(message, category):
    assert _shown(message, category)


def test_the_litlogger_tip_is_dropped_and_other_info_is_kept(caplog):
    silence_lightning_noise()
    silence_lightning_noise()  # idempotent: one filter, not two
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info(TIP)
        logger.info("Restoring states from the checkpoint path at last.ckpt")
    assert [r.getMessage() for r in caplog.records] == ["Restoring states from the checkpoint path at last.ckpt"]
