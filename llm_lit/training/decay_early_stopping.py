"""Early stopping that waits for the learning rate's decay.

Under a warmup-stable-decay schedule, val loss can stall for several validations at the plateau
learning rate and still fall by a few hundredths once the decay begins: a stop counted there ends
the run before its best part. During the decay, a run whose val loss stops improving is
overfitting, and its end will only be worse. `DecayEarlyStopping` is Lightning's `EarlyStopping`
that counts only the validations made after the learning rate has begun to fall from its peak.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping


class DecayEarlyStopping(EarlyStopping):
    """Lightning's `EarlyStopping` (same arguments), counting only validations made while the learning
    rate is past its peak: in the decay of a warmup-stable-decay or cosine schedule (`lr_has_left_its_peak`).

    The best score and the patience both start at the first such validation. Under a constant
    learning rate it never stops a run; use `EarlyStopping` there.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if lr_has_left_its_peak(trainer):
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if lr_has_left_its_peak(trainer):
            super().on_train_epoch_end(trainer, pl_module)


def lr_has_left_its_peak(trainer: L.Trainer) -> bool:
    """Whether the run's first learning-rate schedule is below its peak and not rising (past the warmup).

    Reads the schedule's factor (lr / peak) of a `LambdaLR`, as `build_optimizer` makes, at the current
    step and the one before; True when there is no such schedule (nothing to wait for).
    """
    if not trainer.lr_scheduler_configs:
        return True
    factors = getattr(trainer.lr_scheduler_configs[0].scheduler, "lr_lambdas", None)
    if not factors:
        return True
    step = trainer.global_step
    now = factors[0](step)
    return step > 0 and now < 1.0 and now <= factors[0](step - 1)
