"""`LanguageModel`: the LightningModule that trains, validates, tests and samples a `TransformerLM`.

Lightning runs the loops, precision, strategies, checkpointing and logging. This module holds the
training step and its metrics, the from-scratch optimizer and its schedule with our global-norm
clipping, and the checkpoint hooks (model config and tokenizer travel inside checkpoints:
`checkpoint_hooks`). Scoring validation and test batches is `evaluation.EvaluationHooks`; continuing
prompts is `sampling.SamplingHooks`. The rest is in callbacks it chooses (`configure_callbacks`):
the non-finite guard, the weight average, randomness, logging.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import lightning as L
import torch
from torch import nn
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, ModelParallelStrategy
from torchmetrics import MeanMetric

from llm_lit.errors import UserError
from llm_lit.generation.sampling import SamplingConfig
from llm_lit.model import ModelConfig, build_model
from llm_lit.optim import OptimizerConfig, build_optimizer, clip_grad_norm
from llm_lit.optim.muon import muon_matrices
from llm_lit.training.budget import time_budget_of
from llm_lit.training.callbacks import SpeedMonitor, TrainMetricsWriter
from llm_lit.training.checkpoint_hooks import load_from, save_into
from llm_lit.training.checkpoint_section import require_same_architecture
from llm_lit.training.compilation import compile_model, runnable_optimizer
from llm_lit.training.ema import EmaCallback, EmaSettings
from llm_lit.training.eval_metrics import EvalMetrics, token_byte_lengths
from llm_lit.training.evaluation import EvaluationHooks
from llm_lit.training.guards import require_max_steps
from llm_lit.training.initial_weights import InitialWeights
from llm_lit.training.lightning_compat import attached_trainer
from llm_lit.training.nonfinite import NonFiniteGuard
from llm_lit.training.randomness import ReproducibleRandomness
from llm_lit.training.reporting import RunReport, say_once
from llm_lit.training.resume import ValidationAfterResume
from llm_lit.training.run_end import RunEnd
from llm_lit.training.sampling import SamplingHooks
from llm_lit.training.wall_clock import ElapsedTime
from tokenizer import AnyTokenizer


class LanguageModel(EvaluationHooks, SamplingHooks, L.LightningModule):
    """A GPT-style language model (`self.model`, a `TransformerLM`) for Lightning's loops."""

    def __init__(
        self,
        config: ModelConfig,
        optimizer: OptimizerConfig = OptimizerConfig(),
        grad_clip: float = 1.0,
        compile: bool = False,
        activation_checkpointing: bool = False,
        sampling: SamplingConfig = SamplingConfig(max_new_tokens=200, temperature=0.8, top_k=50, seed=1234),
        sample_prompts: Optional[list[str]] = None,
        skip_nonfinite: bool = False,
        truncate_prompts: bool = False,
        init_from: Optional[str] = None,
        ema: EmaSettings = EmaSettings(),
    ) -> None:
        """Build the model; the tokenizer arrives from the DataModule (fit/validate/test) or the checkpoint.

        Args:
            config: Architecture of the transformer (vocab_size is linked from data.vocab_size).
            optimizer: The optimizer (AdamW, SGD or Muon) and its learning-rate schedule.
            grad_clip: Clip the global gradient norm to this value (0 disables clipping; the norm is logged either way).
            compile: Apply torch.compile to the transformer (worth it on GPUs; slow to start on CPU).
            activation_checkpointing: Recompute each block in the backward pass instead of storing its activations (less memory for about a third more compute).
            sampling: How predict (and the samples logged at each validation) pick tokens.
            sample_prompts: Prompts continued at each validation, printed on the console and sent to every logger that takes text (TensorBoard's text tab, a W&B table, samples.jsonl beside a CSV logger's metrics); '' starts from the BOS or <|endoftext|>; [] disables; None: the corpus's own (the bundled corpus: 'ROMEO:' and 'JULIET:'; any other: the start of its validation split).
            skip_nonfinite: On a NaN/inf loss or gradient, skip that optimizer step (counted in train/skipped_steps) instead of stopping the run.
            truncate_prompts: Keep the last context_length tokens of a prompt longer than the context (with a warning) instead of refusing it.
            init_from: Start from the weights of an llm_lit checkpoint (.ckpt) or a Hugging Face model folder, with its architecture and tokenizer, but a fresh optimizer, schedule and step 0 (fine-tuning; --ckpt_path resumes instead).
            ema: An exponential moving average of the weights for validation and the checkpoints' weights (off by default).
        """
        super().__init__()
        if not grad_clip >= 0:
            raise UserError(f"grad_clip must be >= 0 (got {grad_clip}); pass e.g. 1.0, or 0 to disable clipping.")
        self.config = config
        self.optimizer_config = optimizer
        self.grad_clip = grad_clip
        self.compile_transformer = compile  # not `self.compile`: that would hide nn.Module.compile()
        self.activation_checkpointing = activation_checkpointing
        self.sampling = sampling
        self.sample_prompts = None if sample_prompts is None else list(sample_prompts)
        self.skip_nonfinite = skip_nonfinite
        self.truncate_prompts = truncate_prompts
        self.init_from = init_from
        self.ema = ema
        #: Optimizer steps skipped for a non-finite loss or gradient (`NonFiniteGuard`), saved in checkpoints.
        self.skipped_steps = 0
        #: The step of the checkpoint loaded (`on_load_checkpoint`), or None.
        self.checkpoint_step: Optional[int] = None
        #: Where the weights the model started from came from (`start_from`), or None.
        self.started_from: Optional[str] = None
        self.model = build_model(config)  # a TransformerLM, or a BigramLM with config.architecture bigram
        self.tokenizer: Optional[AnyTokenizer] = None
        self.nonfinite_guard: Optional[NonFiniteGuard] = None  # made in configure_callbacks
        self._grad_norm: Optional[torch.Tensor] = None
        self._compiled = False
        self.train_loss = MeanMetric(nan_strategy="disable")  # no NaN check: it would sync every step
        self.eval_metrics = EvalMetrics()
        #: With data.sources (several): one EvalMetrics per source's validation loader, and the sources' names.
        self.source_metrics = nn.ModuleList()
        self.source_names: list[str] = []

    # ------------------------------------------------------------------ set-up
    def set_tokenizer(self, tokenizer: AnyTokenizer) -> None:
        """Attach the tokenizer (for bits per byte, samples and checkpoints); its ids must fit the model."""
        if tokenizer.vocab_size > self.config.vocab_size:
            raise UserError(f"The tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                            f"{self.config.vocab_size}; set model.config.vocab_size >= {tokenizer.vocab_size} "
                            "(or let data.vocab_size link it).")
        self.tokenizer = tokenizer
        self.set_token_bytes(token_byte_lengths(tokenizer, self.config.vocab_size))

    def start_from(self, weights: InitialWeights) -> None:
        """Load the weights a run starts from (`model.init_from`, read by `llm_lit.run.init_from.read_initial_weights`)
        into the model now; their tokenizer becomes the model's when it has none. The architecture must be this
        model's. Fine-tuning, not resuming: the optimizer, schedule and step counter start afresh (a checkpoint
        resumed with --ckpt_path is restored over these weights). `llm_lit fit` calls it from the run plan."""
        require_same_architecture(self.config, self.model.state_dict(), weights.config.to_dict(), weights.state_dict,
                                  init_from=weights.source)
        self.model.load_state_dict(weights.state_dict, strict=True)
        if self.tokenizer is None and weights.tokenizer is not None:
            self.set_tokenizer(weights.tokenizer)
        self.started_from = weights.source

    def setup(self, stage: str) -> None:
        """Take the tokenizer from the DataModule when it has one; refuse an init_from never loaded."""
        if self.init_from is not None and self.started_from is None:
            raise UserError(f"model.init_from '{self.init_from}' has not been loaded; start the run with llm_lit fit, or "
                            "call model.start_from(llm_lit.run.init_from.read_initial_weights(path)) first.")
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        self.track_sources(list(getattr(datamodule, "source_names", None) or []))
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and tokenizer is not self.tokenizer:
            self.set_tokenizer(tokenizer)
        if stage == "fit" and self.trainer.gradient_clip_val is not None:
            raise UserError("Gradient clipping is set by model.grad_clip; remove trainer.gradient_clip_val.")
        if self.sample_prompts is None:
            corpus_prompts = getattr(datamodule, "corpus_prompts", None)
            self.sample_prompts = corpus_prompts() if corpus_prompts is not None else []
        if stage == "fit" and self.tokenizer is not None and self.sample_prompts:
            self.prompt_policy().encode_all(self.sample_prompts, "model.sample_prompts")  # refuse too-long ones now

    def configure_model(self) -> None:
        """Turn on activation checkpointing and compile the transformer (forward and loss) when asked, or say in
        one line why it trains eagerly (no compiler: `compile_failure`); state-dict names are unchanged."""
        self.model.set_activation_checkpointing(self.activation_checkpointing)
        if self.compile_transformer and not self._compiled:
            compile_model(self.model, self._device_type())
            self._compiled = True

    def _device_type(self) -> str:
        """The device type the model trains on: 'cuda' on a Trainer's CUDA accelerator, else its parameters'."""
        accelerator = getattr(attached_trainer(self), "accelerator", None)
        return "cuda" if isinstance(accelerator, CUDAAccelerator) else self.device.type

    def configure_callbacks(self) -> list[L.Callback]:
        """Dropout seeds and RNG states a resume reproduces, train metrics written before each checkpoint, a pending
        validation run after a resume, tokens/s and MFU, a validation and last.ckpt at the run's last step
        (`run_end`), the run report (`reporting`), the wall time at each validation (`wall_clock`), the
        non-finite guard, and the weight average when model.ema is on."""
        self.nonfinite_guard = NonFiniteGuard(skip=self.skip_nonfinite)
        return ([ReproducibleRandomness(), TrainMetricsWriter(), ValidationAfterResume(), SpeedMonitor(), RunEnd(),
                 RunReport(), ElapsedTime(), self.nonfinite_guard]
                + ([EmaCallback(self.ema.decay, self.ema.gamma)] if self.ema.enabled else []))

    # ------------------------------------------------------------------ training
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Mean next-token cross-entropy of a batch `(x, y)`, each `(batch, seq)`."""
        x, y = batch
        loss = self.model.loss(x, y)
        self.train_loss.update(loss.detach())
        return loss

    def train_step_metrics(self) -> dict[str, Any]:
        """The metrics of a logging step: the mean train loss since the last one (all ranks; the mean is
        then reset), lr and grad norm. `TrainMetricsWriter` logs them before the step's checkpoint."""
        metrics = {"train/loss": self.train_loss.compute(), "lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        if self._grad_norm is not None:
            metrics["grad_norm"] = self._grad_norm
        if self.skip_nonfinite:
            metrics["train/skipped_steps"] = float(self.skipped_steps)
        self.train_loss.reset()
        return metrics

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None,
                                    gradient_clip_algorithm: Any = None) -> None:
        """Our global-norm clipping (`llm_lit.optim.clip_grad_norm`), remembering the norm for logging; then the
        non-finite guard, which needs the norm and must run before the optimizer step (this is the last hook)."""
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        if isinstance(self.trainer.strategy, FSDPStrategy):  # every rank holds a shard: FSDP's clipping all-reduces
            norm = self.trainer.strategy.model.clip_grad_norm_(max_norm)
        else:
            norm = clip_grad_norm(self.parameters(), max_norm)
        self._grad_norm = norm.detach()
        if self.nonfinite_guard is not None:
            self.nonfinite_guard.before_optimizer_step(self.trainer, self, optimizer, self._grad_norm)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step, then free the gradients at once: Lightning would only drop them after the next forward,
        so they would sit in memory next to that forward's activations (the step's peak)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def configure_optimizers(self, steps: Optional[int] = None) -> dict[str, Any]:
        """The configured optimizer (`model.optimizer.name`) and schedule, stepped every optimizer step for `steps`
        steps (default: as many as the Trainer takes, Lightning's count: trainer.max_steps, or the steps of
        trainer.max_epochs capped by it), or up to the steps that fit in --time_budget (`llm_lit.training.budget`)."""
        if steps is None:
            estimated = self.trainer.estimated_stepping_batches
            steps = int(estimated) if math.isfinite(estimated) else None
        max_steps = require_max_steps(steps)
        sharded = isinstance(self.trainer.strategy, (FSDPStrategy, ModelParallelStrategy))  # FSDP 1 or 2 (DTensor)
        data_parallel = isinstance(self.trainer.strategy, DDPStrategy) and self.trainer.world_size > 1
        budget = time_budget_of(self.trainer)  # with --time_budget the schedule lasts the steps that fit
        horizon = (lambda step: budget.horizon(step, max_steps)) if budget is not None else None
        config = runnable_optimizer(self.optimizer_config, self._device_type())
        optimizer, schedule = build_optimizer(config, self.model, max_steps, sharded=sharded,
                                              data_parallel=data_parallel, note=say_once,
                                              hidden_matrices=muon_matrices(self.model), horizon=horizon)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    def check_fit_settings(self, trainer: L.Trainer, steps: Optional[int]) -> None:
        """Build the optimizer and schedule once, on a throw-away optimizer, for a run of `steps` optimizer steps (the
        run plan's count known before the data, or its cap; None: epochs without a cap, checked once the data is),
        so that what they refuse is refused before the data step (tokenizer training and encoding)."""
        if steps is not None:
            self.trainer = trainer  # the schedule reads the run's strategy and time budget from it
            try:
                self.configure_optimizers(steps)
            finally:
                self.trainer = None

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Embed the model config and tokenizer (plain JSON-able data) so the checkpoint is self-contained, plus the
        train loss's running mean a resume restores (`checkpoint_hooks.save_into`)."""
        save_into(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another architecture, take its tokenizer (refusing one that differs from the
        DataModule's); in fit, restore the train loss's running mean too (`checkpoint_hooks.load_from`)."""
        load_from(self, checkpoint)
