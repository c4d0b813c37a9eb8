"""An exponential moving average (EMA) of the weights, for evaluation (`model.ema.enabled: true`).

After optimizer step `t` (t = 1, 2, ...) with weights `w_t`, the average is the debiased EMA

    m_t = d m_{t-1} + (1 - d) w_t,   m_0 = 0
    a_t = m_t / (1 - d^t)  =  sum_{k=1..t} (1 - d) d^(t-k) w_k / (1 - d^t)

a weighted mean of every step's weights in which step `k` counts `d^(t-k)` as much as the last one
(the weights sum to 1 at every `t`, so early averages are not pulled towards zero, and the random
initial weights `w_0` never enter). `1 / (1 - d)` steps is its memory: 100 for `d = 0.99`.

With `gamma` set instead (the power-function average of Karras et al., 2024), the decay of step `t` is

    d_t = (1 - 1/t)^(gamma + 1)

so `d_1 = 0` (no debiasing needed: `a_t = m_t`) and step `k` counts in proportion to about `k^gamma`: the
memory grows with the run, about the last `t / (gamma + 1)` steps. A fixed decay that suits the end
of a run lags behind in its middle, and one that suits the middle is too short at the end.

During `fit`, every validation (and the samples logged with it) runs on the averaged weights; the
training weights are put back before the next step. Checkpoints hold the weights validation
measured: `state_dict` holds the average, so `validate`, `test`, `predict` and `export` use it with no
setting, and the training weights and `m_t` travel beside it under `llm_lit_ema`, from which a
resumed fit restores both bitwise. The average is kept in float32 whatever the weights' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torch import Tensor

from llm_lit.errors import UserError

#: Where a checkpoint keeps the training weights and the running sum (the average is its state_dict).
EMA_KEY = "llm_lit_ema"


@dataclass
class EmaSettings:
    """An exponential moving average of the weights, used for validation and saved as the checkpoint's weights.

    Args:
        enabled: Keep a debiased EMA of the weights; validation, samples and the checkpoints' weights use it (training continues from the raw weights, which checkpoints keep beside it).
        decay: d in m <- d m + (1 - d) w after every optimizer step (the average remembers about 1 / (1 - d) steps).
        gamma: Instead of a fixed decay, the power-function average: after step t it remembers about the last t / (gamma + 1) steps (step k counts in proportion to k^gamma).
    """

    enabled: bool = False
    decay: float = 0.99
    gamma: Optional[float] = None

    def __post_init__(self) -> None:
        if not 0 < self.decay < 1:
            raise UserError(f"model.ema.decay must be in (0, 1) (got {self.decay}); pass e.g. 0.99.")
        if self.gamma is not None and not self.gamma >= 0:
            raise UserError(f"model.ema.gamma must be >= 0 (got {self.gamma}); pass e.g. 5 (about the last sixth of the steps).")
        decay_set = self.decay != EmaSettings.__dataclass_fields__["decay"].default
        if not self.enabled and (decay_set or self.gamma is not None):
            name, value = ("gamma", self.gamma) if self.gamma is not None else ("decay", self.decay)
            raise UserError(f"model.ema.{name} is set ({value}) but model.ema.enabled is false; pass "
                            f"--model.ema.enabled true, or leave the {name} at its default.")
        if decay_set and self.gamma is not None:
            raise UserError(f"model.ema.decay ({self.decay}) and model.ema.gamma ({self.gamma}) are both set; set "
                            "one: gamma replaces the fixed decay.")


class WeightAverage:
    """The debiased EMA `a_t = m_t / (1 - d^t)` of a fixed list of parameters (see the module docstring).

    Args:
        params: the parameters to average (each a tensor of any shape).
        decay: d in (0, 1).
        gamma: when set, the power-function average's exponent (`decay` is then unused).
    """

    def __init__(self, params: list[Tensor], decay: float, gamma: Optional[float] = None) -> None:
        self.params = list(params)
        self.decay = decay
        self.gamma = gamma
        self.sums = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]  # m_t
        self.steps = 0  # t

    def decay_at(self, step: int) -> float:
        """`d_t` of step `t` (from 1): the fixed decay, or `(1 - 1/t)^(gamma + 1)`."""
        return self.decay if self.gamma is None else (1.0 - 1.0 / step) ** (self.gamma + 1.0)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights in as step `t + 1`: `m <- d m + (1 - d) w`."""
        torch._foreach_lerp_(self.sums, [p.float() for p in self.params], 1.0 - self.decay_at(self.steps + 1))
        self.steps += 1

    def averages(self) -> list[Tensor]:
        """`a_t` for each parameter (float32); the current weights themselves before the first update."""
        if self.steps == 0:
            return [p.detach().float().clone() for p in self.params]
        if self.gamma is not None:  # d_1 = 0: the sum is a weighted mean already
            return [m.clone() for m in self.sums]
        scale = 1.0 / (1.0 - self.decay ** self.steps)
        return [m * scale for m in self.sums]

    def swapped_in(self) -> "_Swap":
        """A context in which the parameters hold the averages; the exact training weights return on exit."""
        return _Swap(self)

    def state_dict(self) -> dict[str, Any]:
        """`m_t` and `t` (tensors and plain numbers, loadable with `weights_only=True`)."""
        return {"sums": [m.clone() for m in self.sums], "steps": self.steps, "decay": self.decay, "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `m_t` and `t` saved by `state_dict` (bitwise)."""
        sums = state["sums"]
        if state.get("gamma") != self.gamma:  # the sums of one kind of average mean nothing to the other
            kept = "a fixed decay" if state.get("gamma") is None else f"gamma {state['gamma']}"
            raise UserError(f"The checkpoint's weight average was kept with {kept}; resume with the model.ema "
                            "settings it was written with.")
        if len(sums) != len(self.sums) or any(a.shape != b.shape for a, b in zip(sums, self.sums)):
            raise UserError("The checkpoint's weight average does not fit this model's parameters; resume with the "
                            "model settings it was written with.")
        for mine, saved in zip(self.sums, sums):
            mine.copy_(saved)
        self.steps = int(state["steps"])


class _Swap:
    """Puts the averages into the parameters on enter, the exact training weights back on exit."""

    def __init__(self, average: WeightAverage) -> None:
        self.average = average
        self.saved: list[Tensor] = []

    def __enter__(self) -> None:
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.average.params]
            for p, a in zip(self.average.params, self.average.averages()):
                p.copy_(a)

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for p, w in zip(self.average.params, self.saved):
                p.copy_(w)
        self.saved = []


class EmaCallback(L.Callback):
    """Keeps the `WeightAverage` of `pl_module.model` during fit: updated after every optimizer step,
    swapped in for each validation, saved as the checkpoint's weights (see the module docstring).

    Args:
        decay: d of the average.
        gamma: when set, the power-function average's exponent instead of `decay`.
    """

    def __init__(self, decay: float, gamma: Optional[float] = None) -> None:
        self.decay = decay
        self.gamma = gamma
        self.average: Optional[WeightAverage] = None
        self._loaded: Optional[dict[str, Any]] = None
        self._last_step = -1
        self._swap: Optional[_Swap] = None

    def _ensure(self, pl_module: L.LightningModule) -> WeightAverage:
        if self.average is None:
            self.average = WeightAverage(list(pl_module.model.parameters()), self.decay, self.gamma)
        return self.average

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
            raise UserError("model.ema averages whole weights, but FSDP shards them across devices; train with "
                            "--trainer.strategy ddp (or one device), or turn model.ema off.")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ensure(pl_module)
        self._last_step = trainer.global_step
        if self._loaded is not None:
            self.average.load_state_dict(self._loaded)
            self._loaded = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step != self._last_step:  # an optimizer step happened (not mid-accumulation)
            self._last_step = trainer.global_step
            self.average.update()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and self.average is not None:
            self._swap = self.average.swapped_in()
            self._swap.__enter__()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swap is not None:
            self._swap.__exit__(None, None, None)
            self._swap = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_validation_end(trainer, pl_module)  # never leave the averages in place of the training weights

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """The checkpoint's weights become the averages; the training weights and `m_t` go under `EMA_KEY`."""
        average = self._ensure(pl_module)
        params = average.params
        if self._swap is not None:  # saved during validation: the parameters hold the averages right now
            training = [w.clone() for w in self._swap.saved]
        else:
            training = [p.detach().clone() for p in params]
        averages = average.averages()
        by_storage = {(p.data_ptr(), tuple(p.shape)): i for i, p in enumerate(params)}
        state = checkpoint["state_dict"]
        for key, value in state.items():  # tied weights: every name that shares a parameter's storage
            i = by_storage.get((value.data_ptr(), tuple(value.shape))) if isinstance(value, Tensor) else None
            if i is not None:
                state[key] = averages[i].to(value.dtype)
        checkpoint[EMA_KEY] = {**average.state_dict(), "training_weights": training}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Resume: the model was loaded with the averages; put the training weights back and keep `m_t`."""
        saved = checkpoint.get(EMA_KEY)
        if saved is None:  # the average starts now, from the weights the checkpoint holds
            return
        params = list(pl_module.model.parameters())
        weights = saved["training_weights"]
        if len(weights) != len(params) or any(w.shape != p.shape for w, p in zip(weights, params)):
            raise UserError("The checkpoint's training weights do not fit this model; resume with the model settings "
                            "it was written with.")
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        self._loaded = saved


def refuse_resume_without_ema(checkpoint: dict[str, Any], ema_enabled: bool) -> None:
    """A checkpoint written with model.ema holds the average as its weights: refuse to resume training from
    it without the EMA, which would continue from the average instead of the training weights."""
    if EMA_KEY in checkpoint and not ema_enabled:
        saved = checkpoint[EMA_KEY]
        setting = (f"--model.ema.gamma {saved['gamma']}" if saved.get("gamma") is not None
                   else f"--model.ema.decay {saved.get('decay', 0.99)}")
        raise UserError("This checkpoint was written with model.ema on (its weights are the average, the training "
                        f"weights are kept beside it); resume with --model.ema.enabled true {setting}.")

