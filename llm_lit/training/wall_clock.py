"""`ElapsedTime`: the wall time of the run at each validation, logged as `time/elapsed_s`.

Seconds since the command started (rank 0's process: importing torch, tokenizer training and
encoding included), plus those of the processes before a resume, so the time a run took to reach
any validation loss or bpb can be read from its logs (`llm_lit plot --x time` draws it).
"""

from __future__ import annotations

from typing import Any

import lightning as L

from llm_lit.training.budget import process_clock

#: The metric's name.
ELAPSED_KEY = "time/elapsed_s"


class ElapsedTime(L.Callback):
    """Logs `time/elapsed_s` after each validation of a fit; its seconds travel in checkpoints."""

    def __init__(self) -> None:
        self.seconds_before = 0.0  # used by the processes before a resume

    def elapsed(self) -> float:
        """Seconds of wall time this run has used so far."""
        return self.seconds_before + process_clock()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            pl_module.log(ELAPSED_KEY, self.elapsed(), rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        """The seconds used so far."""
        return {"seconds_used": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue counting from the seconds the run's earlier processes used."""
        self.seconds_before = float(state_dict.get("seconds_used", 0.0))
