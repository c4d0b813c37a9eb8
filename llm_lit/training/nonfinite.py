"""The non-finite guard: a NaN or infinite loss or gradient never reaches the weights.

Before each optimizer step (`before_optimizer_step`, called by `LanguageModel.configure_gradient_clipping`,
the last hook that runs before the step and the one that has the gradient norm), the guard looks at the
loss of every micro-batch of the step and at the gradient norm:

* all finite: the step goes on;
* otherwise the run stops with one sentence (`NonFiniteError`), before the weights change, so no
  checkpoint ever holds what the step would have made of them;
* with `skip` (`--model.skip_nonfinite true`) the step is skipped instead (its gradients dropped,
  counted in `LanguageModel.skipped_steps`), unless the loss was not finite on `UNUSABLE_AFTER` steps
  in a row: skipped steps leave the weights unchanged, so that is no bad batch but weights an earlier
  (finite) update made unusable, and the run stops naming the last good step.

A validation loss that is not finite stops the run too (`check_validation_loss`), before samples are
drawn from those weights and before any checkpoint of them; and no checkpoint of fit is ever written
of weights that hold NaN or infinity (`refuse_nonfinite_weights`). Under fp16 mixed precision Lightning's
gradient scaler already skips steps whose gradients overflow, so only the loss is checked there.
"""

from __future__ import annotations

import math
from typing import Optional

import lightning as L
import torch

from llm_lit.training.guards import NonFiniteError, all_finite, nonfinite_message, unusable_message
from llm_lit.training.resume import last_checkpoint

#: Steps in a row with a non-finite loss (and unchanged weights) after which `skip` stops the run.
UNUSABLE_AFTER = 3


class NonFiniteGuard(L.Callback):
    """Stops (or, with `skip`, skips the optimizer step of) a step whose loss or gradient norm is not finite.

    Args:
        skip: Skip such steps (counted in `pl_module.skipped_steps`) instead of stopping the run.
    """

    def __init__(self, skip: bool = False) -> None:
        self.skip = skip
        self._loss_finite: Optional[torch.Tensor] = None  # () bool: every micro-batch loss of this step so far
        self._last_loss: Optional[torch.Tensor] = None
        self._nonfinite_losses_in_a_row = 0
        self._last_good_step = 0  # the last step whose loss and gradients were finite
        self._last_good_val_step = 0  # the last validation whose loss was finite

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Weights loaded or initialised at the start of fit count as good."""
        self._nonfinite_losses_in_a_row = 0
        self._last_good_step = self._last_good_val_step = trainer.global_step

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        """Note whether this micro-batch's loss is finite (checked once per optimizer step: one device sync)."""
        finite = torch.isfinite(loss.detach())
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        self._last_loss = loss.detach()

    def before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer,
                              grad_norm: torch.Tensor) -> None:
        """Let the step go on, skip it (drop its gradients) or stop the run (see the module docstring)."""
        loss_finite = self._loss_finite if self._loss_finite is not None else torch.ones((), dtype=torch.bool)
        self._loss_finite = None
        precision = str(trainer.precision)
        scaler_handles_grads = "16-mixed" in precision and "bf16" not in precision
        ok = loss_finite if scaler_handles_grads else loss_finite & torch.isfinite(grad_norm).to(loss_finite.device)
        if bool(ok):
            self._nonfinite_losses_in_a_row, self._last_good_step = 0, trainer.global_step
            return
        if not self.skip:
            loss = float(self._last_loss) if not bool(loss_finite) else 0.0  # 0.0: the loss was fine, the gradient not
            raise NonFiniteError(nonfinite_message(trainer.global_step, loss, float(grad_norm)))
        # the ranks agree: any rank's non-finite loss counts
        loss_failed = trainer.strategy.reduce_boolean_decision(not bool(loss_finite), all=False)
        self._nonfinite_losses_in_a_row = self._nonfinite_losses_in_a_row + 1 if loss_failed else 0
        if self._nonfinite_losses_in_a_row >= UNUSABLE_AFTER:
            raise NonFiniteError(unusable_message(
                f"the loss was not finite on {UNUSABLE_AFTER} steps in a row with unchanged weights",
                trainer.global_step, self._last_good_step))
        pl_module.skipped_steps += 1
        optimizer.zero_grad(set_to_none=True)  # the optimizers leave parameters without gradients untouched

    def check_validation_loss(self, trainer: L.Trainer, loss: Optional[float]) -> None:
        """Stop the run when a validation during fit (not the sanity check) measured a loss that is not finite."""
        if loss is None or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        if not math.isfinite(loss):
            raise NonFiniteError(unusable_message(f"the validation loss is {loss}", trainer.global_step,
                                                  self._last_good_val_step))
        self._last_good_val_step = trainer.global_step


def refuse_nonfinite_weights(trainer: L.Trainer, model: torch.nn.Module) -> None:
    """`NonFiniteError` (no checkpoint written) when `model`'s weights hold NaN or infinity during fit."""
    if trainer.state.fn != "fit" or all_finite(model.parameters()):
        return
    last = last_checkpoint(trainer)
    fix = (f"(the previous one, {last}, is intact); lower model.optimizer.lr and resume from it with --ckpt_path last."
           if last is not None else "(none was written before either); lower model.optimizer.lr and start again.")
    raise NonFiniteError(f"The weights hold NaN or infinite values at step {trainer.global_step}, so no checkpoint "
                         f"was written {fix}")
