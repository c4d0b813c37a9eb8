"""`LanguageModel`: the LightningModule that trains, validates, tests and samples a `TransformerLM`.

Lightning runs the loops, precision, strategies, checkpointing and logging; this module
adds only what is ours: the from-scratch optimizer (AdamW, SGD or Muon) and its schedule (stepped per
optimizer step, its length taken from `trainer.max_steps`), our global-norm clipping, exact
DDP-safe validation metrics (loss, perplexity, bits per byte), sampled text, and
self-contained checkpoints (model config and tokenizer travel inside them).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import lightning as L
import torch
from torchmetrics import MeanMetric, SumMetric

from llm_lit.budget import time_budget_of
from llm_lit.callbacks import SpeedMonitor, TrainMetricsWriter
from llm_lit.checkpoint import CHECKPOINT_KEY, llm_lit_section, same_tokenizer
from llm_lit.data.datasets import IGNORE_INDEX
from llm_lit.ema import EmaCallback, EmaSettings, refuse_resume_without_ema
from llm_lit.errors import UserError
from llm_lit.generation import SamplingConfig, generate
from llm_lit.guards import (NonFiniteError, all_finite, config_differences, nonfinite_message, require_max_steps,
                            state_dict_mismatch, unusable_message)
from llm_lit.init_from import InitialWeights, read_initial_weights
from llm_lit.lightning_compat import attached_trainer
from llm_lit.model import ModelConfig, build_model
from llm_lit.optim import OptimizerConfig, build_optimizer, clip_grad_norm
from llm_lit.reporting import RunReport, log_samples
from llm_lit.resume import (RNG_KEY, ValidationAfterResume, last_checkpoint, micro_batch_seed, rng_states,
                            set_rng_states)
from tokenizer import AnyTokenizer, tokenizer_from_dict

END_OF_TEXT = "<|endoftext|>"
#: Steps in a row with a non-finite loss (and unchanged weights) after which skip_nonfinite stops the run.
UNUSABLE_AFTER = 3
#: Checkpoint key of the train loss's running mean since the last logging step (per rank).
TRAIN_LOSS_KEY = "llm_lit_train_loss"


def muon_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters Muon takes with model.optimizer.name muon: the 2-D weight matrices inside the
    transformer blocks (attention and feed-forward projections). Embeddings, the output head, norms
    and biases stay with AdamW."""
    return [p for name, p in model.named_parameters() if name.startswith("layers.") and p.dim() == 2]


def _not_saved_fix(last: Optional[Any]) -> str:
    """The end of the message about a checkpoint that was not written: where the previous one is, and what to do."""
    if last is not None:
        return f"(the previous one, {last}, is intact); lower model.optimizer.lr and resume from it with --ckpt_path last."
    return "(none was written before either); lower model.optimizer.lr and start again."


class LanguageModel(L.LightningModule):
    """A GPT-style language model (`self.model`, a `TransformerLM`) for Lightning's loops."""

    def __init__(
        self,
        config: ModelConfig,
        optimizer: OptimizerConfig = OptimizerConfig(),
        grad_clip: float = 1.0,
        compile: bool = False,
        activation_checkpointing: bool = False,
        sampling: SamplingConfig = SamplingConfig(max_new_tokens=200, temperature=0.8, top_k=50, seed=1234),
        sample_prompts: list[str] = [""],
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
            sample_prompts: Prompts continued at each validation, printed on the console and sent to every logger that takes text (TensorBoard's text tab, a W&B table, samples.jsonl beside a CSV logger's metrics); '' starts from the BOS or <|endoftext|>; [] disables.
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
        self.sample_prompts = list(sample_prompts)
        self.skip_nonfinite = skip_nonfinite
        self.truncate_prompts = truncate_prompts
        self.ema = ema
        self.skipped_steps = 0
        self.init_from = init_from
        #: The `init_from` weights when the CLI already read them (else `setup` reads them).
        self.initial_weights: Optional[InitialWeights] = None
        self._init_from_loaded = False
        self._loss_finite: Optional[torch.Tensor] = None
        self._last_loss: Optional[torch.Tensor] = None
        #: Steps in a row whose loss was not finite (skipped steps leave the weights as they were), and the
        #: last step whose loss and gradients were finite; see `_guard_nonfinite`.
        self._nonfinite_losses_in_a_row = 0
        self._last_good_step = 0
        self._last_good_val_step = 0
        self.model = build_model(config)  # a TransformerLM, or a BigramLM with config.architecture bigram
        self.tokenizer: Optional[AnyTokenizer] = None
        self._token_bytes: Optional[torch.Tensor] = None
        self._grad_norm: Optional[torch.Tensor] = None
        self._compiled = False
        self.train_loss = MeanMetric(nan_strategy="disable")  # no NaN check: it would sync every step
        self.eval_nll = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.eval_tokens = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.eval_bytes = SumMetric(nan_strategy="disable").set_dtype(torch.float64)

    # ------------------------------------------------------------------ tokenizer
    def set_tokenizer(self, tokenizer: AnyTokenizer) -> None:
        """Attach the tokenizer (for bits per byte, samples and checkpoints); its ids must fit the model."""
        if tokenizer.vocab_size > self.config.vocab_size:
            raise UserError(f"The tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                            f"{self.config.vocab_size}; set model.config.vocab_size >= {tokenizer.vocab_size} "
                            "(or let data.vocab_size link it).")
        self.tokenizer = tokenizer
        # byte length of each token id: what bits per byte divides by
        lengths = torch.zeros(self.config.vocab_size, dtype=torch.float64)
        for token_id, token_bytes in tokenizer.vocab.items():
            lengths[token_id] = len(token_bytes)
        self._token_bytes = lengths

    def setup(self, stage: str) -> None:
        """Load the `init_from` weights; take the tokenizer from the DataModule when it has one."""
        if self.init_from is not None and not self._init_from_loaded:
            self._load_initial_weights()
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and tokenizer is not self.tokenizer:
            self.set_tokenizer(tokenizer)
        if stage == "fit" and self.trainer.gradient_clip_val is not None:
            raise UserError("Gradient clipping is set by model.grad_clip; remove trainer.gradient_clip_val.")
        if stage == "fit" and self.tokenizer is not None and self.sample_prompts:
            self.encode_prompts(self.sample_prompts, what="model.sample_prompts")  # refuse too-long prompts now

    def _load_initial_weights(self) -> None:
        """The `init_from` weights into the model (once), and its tokenizer when the run has none yet."""
        initial = self.initial_weights or read_initial_weights(self.init_from)
        self.initial_weights, self._init_from_loaded = None, True  # later stages keep the trained weights
        differences = config_differences(initial.config.to_dict(), self.config.to_dict())
        if differences:
            raise UserError(f"model.init_from '{initial.source}' has another architecture ({'; '.join(differences[:3])}); "
                            "leave model.config to the source (the CLI applies it) or pass a source of this model.")
        problem = state_dict_mismatch(self.model.state_dict(), initial.state_dict)
        if problem:
            raise UserError(f"The weights of model.init_from '{initial.source}' do not fit this model ({problem}); "
                            "pass an unmodified checkpoint or model folder.")
        self.model.load_state_dict(initial.state_dict, strict=True)
        if self.tokenizer is None and initial.tokenizer is not None:
            self.set_tokenizer(initial.tokenizer)

    def configure_model(self) -> None:
        """Turn on activation checkpointing and compile the transformer (forward and loss) when asked;
        state-dict names are unchanged."""
        self.model.set_activation_checkpointing(self.activation_checkpointing)
        if self.compile_transformer and not self._compiled:
            self.model.compile()
            self._compiled = True

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        """Weights loaded or initialised at the start of fit count as good (for the unusable-weights report)."""
        self._nonfinite_losses_in_a_row = 0
        self._last_good_step = self._last_good_val_step = self.global_step

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch's generator from (seed, micro-batch index, rank): dropout then needs no saved state."""
        micro_batch = self.trainer.fit_loop.epoch_loop.total_batch_idx
        if micro_batch % self.trainer.accumulate_grad_batches == 0:
            for logger in self.loggers:  # the previous step's logs reach the disk before this step can crash
                logger.save()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        torch.manual_seed(micro_batch_seed(seed, micro_batch, self.trainer.global_rank))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Mean next-token cross-entropy of a batch `(x, y)`, each `(batch, seq)`."""
        x, y = batch
        loss = self.model.loss(x, y)
        self.train_loss.update(loss.detach())
        finite = torch.isfinite(loss.detach())  # checked once per optimizer step (one sync), see _guard_nonfinite
        self._loss_finite = finite if self._loss_finite is None else self._loss_finite & finite
        self._last_loss = loss.detach()
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
        """Our global-norm clipping (`llm_lit.optim.clip_grad_norm`); remembers the norm for logging."""
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        sharded = getattr(self.trainer.strategy, "strategy_name", "") == "fsdp"
        if sharded:  # every rank holds a shard: FSDP's own clipping all-reduces the norm
            norm = self.trainer.strategy.model.clip_grad_norm_(max_norm)
        else:
            norm = clip_grad_norm(self.parameters(), max_norm)
        self._grad_norm = norm.detach()
        self._guard_nonfinite(optimizer, self._grad_norm)

    def _guard_nonfinite(self, optimizer: torch.optim.Optimizer, grad_norm: torch.Tensor) -> None:
        """Stop (or, with skip_nonfinite, skip this optimizer step) when the loss or gradient norm is not finite.

        Runs before `optimizer.step`, so stopping leaves the weights (and every later checkpoint)
        as they were after the last good step. Under fp16 mixed precision the gradient scaler
        already skips steps with overflowing gradients, so only the loss is checked there.
        """
        loss_finite = self._loss_finite if self._loss_finite is not None else torch.ones((), dtype=torch.bool)
        self._loss_finite = None
        scaler_handles_grads = "16-mixed" in str(self.trainer.precision) and "bf16" not in str(self.trainer.precision)
        ok = loss_finite if scaler_handles_grads else loss_finite & torch.isfinite(grad_norm).to(loss_finite.device)
        if bool(ok):
            self._nonfinite_losses_in_a_row, self._last_good_step = 0, self.global_step
            return
        if self.skip_nonfinite:
            # Skipped steps leave the weights unchanged: a non-finite loss on several batches in a row is not a
            # bad batch but weights an update has made unusable (e.g. a huge, finite, learning rate); no later
            # step could succeed, so stop rather than skip them all. The ranks agree (any rank's loss counts).
            loss_failed = self.trainer.strategy.reduce_boolean_decision(not bool(loss_finite), all=False)
            self._nonfinite_losses_in_a_row = self._nonfinite_losses_in_a_row + 1 if loss_failed else 0
            if self._nonfinite_losses_in_a_row >= UNUSABLE_AFTER:
                raise NonFiniteError(unusable_message(
                    f"the loss was not finite on {UNUSABLE_AFTER} steps in a row with unchanged weights",
                    self.global_step, self._last_good_step))
            self.skipped_steps += 1
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without gradients untouched
            return
        loss = float(self._last_loss) if not bool(loss_finite) else 0.0  # 0.0: the loss was fine, the gradient was not
        raise NonFiniteError(nonfinite_message(self.global_step, loss, float(grad_norm)))

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step, then free the gradients at once: Lightning would only drop them after the next forward,
        so they would sit in memory next to that forward's activations (the step's peak)."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def configure_optimizers(self) -> dict[str, Any]:
        """The configured optimizer (`model.optimizer.name`) and schedule, stepped every optimizer step up to
        trainer.max_steps, or with trainer.max_epochs the steps of those epochs, or up to the steps that fit in
        --time_budget (see `llm_lit.optim.config`, `llm_lit.budget`)."""
        if getattr(self.trainer, "max_epochs", None) not in (None, -1):  # epochs: their optimizer steps (capped by max_steps)
            max_steps = int(self.trainer.estimated_stepping_batches)
        else:
            max_steps = require_max_steps(self.trainer.max_steps)
        strategy = getattr(getattr(self.trainer, "strategy", None), "strategy_name", "")
        sharded = strategy in ("fsdp", "model_parallel")  # FSDP 1 (flat shards) or 2 (DTensor)
        budget = time_budget_of(self.trainer)  # with --time_budget the schedule lasts the steps that fit
        horizon = (lambda step: budget.horizon(step, max_steps)) if budget is not None else None
        optimizer, schedule = build_optimizer(self.optimizer_config, self.model, max_steps,
                                              hidden_matrices=muon_matrices(self.model), sharded=sharded,
                                              horizon=horizon)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}

    def check_fit_settings(self, trainer: L.Trainer) -> None:
        """Refuse, in one line naming the setting, what would otherwise fail only after the data step (tokenizer
        training and encoding): Lightning's gradient clipping, a warmup longer than `fast_dev_run`'s steps, and
        anything `configure_optimizers` refuses (the schedule against trainer.max_steps, ...), which builds the
        optimizer and schedule once here, on a throw-away optimizer."""
        if trainer.gradient_clip_val is not None:
            raise UserError("Gradient clipping is set by --model.grad_clip; remove --trainer.gradient_clip_val.")
        if trainer.max_steps == -1 and not trainer.fast_dev_run:
            return  # epochs without a step cap: their steps are known only from the data (configure_optimizers)
        steps, warmup = require_max_steps(trainer.max_steps), self.optimizer_config.warmup_steps
        if trainer.fast_dev_run and warmup > steps:
            raise UserError(f"--trainer.fast_dev_run runs {steps} step{'s' if steps != 1 else ''}, fewer than the {warmup} "
                            "of --model.optimizer.warmup_steps; add --model.optimizer.warmup_steps 0 to it.")
        self.trainer = trainer  # configure_optimizers reads the run's length and strategy from it
        try:
            self.configure_optimizers()
        finally:
            self.trainer = None

    def configure_callbacks(self) -> list[L.Callback]:
        """Train metrics written before each checkpoint, a checkpoint's pending validation run after a
        resume, tokens/s and MFU logging, the hyperparameters and end-of-fit summary (`llm_lit.reporting`),
        and the weight average when model.ema is on, during fit."""
        return ([TrainMetricsWriter(), ValidationAfterResume(), SpeedMonitor(), RunReport()]
                + ([EmaCallback(self.ema.decay)] if self.ema.enabled else []))

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        keep = y != IGNORE_INDEX
        count = keep.sum()
        loss = self.model.loss(x, y, ignore_index=IGNORE_INDEX)
        nll = torch.where(count > 0, loss.double() * count, torch.zeros((), dtype=torch.float64, device=loss.device))
        self.eval_nll.update(nll)
        self.eval_tokens.update(count.double())
        if self._token_bytes is not None:
            if self._token_bytes.device != y.device:
                self._token_bytes = self._token_bytes.to(y.device)
            self.eval_bytes.update(self._token_bytes[y[keep]].sum())

    def _log_eval(self, prefix: str) -> Optional[float]:
        """Log `{prefix}/loss`, `/ppl`, `/bpb` of the accumulated batches; returns the loss (None without tokens)."""
        tokens = self.eval_tokens.compute()
        if tokens <= 0:
            return None
        nll = self.eval_nll.compute()
        loss = nll / tokens
        metrics = {f"{prefix}/loss": loss, f"{prefix}/ppl": torch.exp(loss)}
        if self._token_bytes is not None:
            metrics[f"{prefix}/bpb"] = nll / math.log(2) / self.eval_bytes.compute()
        for metric in (self.eval_nll, self.eval_tokens, self.eval_bytes):
            metric.reset()
        self.log_dict({k: v.float() for k, v in metrics.items()}, prog_bar=True, sync_dist=False)
        return float(loss)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Accumulate the exact token NLL, token count and byte count of a validation batch."""
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        """Log val/loss, val/ppl, val/bpb (summed over all ranks), then a few sampled continuations; during
        fit, stop (before sampling and before any checkpoint) when the validation loss is not finite."""
        loss = self._log_eval("val")
        if loss is not None and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            if not math.isfinite(loss):  # stop before sampling from them and before any checkpoint of them
                raise NonFiniteError(unusable_message(f"the validation loss is {loss}", self.global_step,
                                                      self._last_good_val_step))
            self._last_good_val_step = self.global_step
        if not self.trainer.sanity_checking and (loss is None or math.isfinite(loss)):
            self._log_samples()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Accumulate the exact token NLL, token count and byte count of a test batch."""
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        """Log test/loss, test/ppl and test/bpb."""
        self._log_eval("test")

    # ------------------------------------------------------------------ sampling
    def continue_texts(self, prompts: list[str]) -> list[dict[str, Any]]:
        """Continue each prompt with `self.sampling`; returns `{"prompt", "completion", "num_tokens"}` per prompt."""
        self._require_tokenizer()
        ids = self.encode_prompts(prompts)
        outputs = generate(self.model, ids, self.sampling, stop_tokens=self.stop_ids())
        return [{"prompt": p, "completion": self.tokenizer.decode(out), "num_tokens": len(out)}
                for p, out in zip(prompts, outputs)]

    def _require_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise UserError("The model has no tokenizer; predict from a checkpoint written by llm_lit fit "
                            "(--ckpt_path PATH).")

    def stop_ids(self) -> list[int]:
        """Ids that end a continuation: those of `sampling.stop_tokens` when set, else the tokenizer's EOS
        role, else <|endoftext|> (when the tokenizer has it)."""
        names = self.sampling.stop_tokens
        if names is None:
            eos = self.tokenizer.role_id("eos")
            if eos is not None:
                return [eos]
            eot = self.tokenizer.token_to_id(END_OF_TEXT)
            return [eot] if eot is not None else []
        ids = []
        for name in names:
            token_id = self.tokenizer.token_to_id(name) if name in self.tokenizer.special_tokens else None
            if token_id is None:
                raise UserError(f"model.sampling.stop_tokens names {name!r}, which is not a special token of the "
                                f"tokenizer (it has {self.tokenizer.special_tokens}); pick one of those.")
            ids.append(token_id)
        return ids

    def encode_prompts(self, prompts: list[str], what: str = "prompt") -> list[list[int]]:
        """Token ids of each prompt, after the tokenizer's BOS when it has one ('' becomes the BOS, else
        <|endoftext|>); refuses one longer than the context unless truncate_prompts."""
        self._require_tokenizer()
        bos = self.tokenizer.role_id("bos")
        start = bos if bos is not None else self.tokenizer.token_to_id(END_OF_TEXT)
        ids = []
        for i, prompt in enumerate(prompts):
            encoded = self.tokenizer.encode(prompt)
            if bos is not None:
                encoded = [bos] + encoded
            if not encoded:
                if start is None:
                    raise UserError("An empty prompt needs an <|endoftext|> or BOS token to start from; "
                                    "pass a non-empty prompt.")
                encoded = [start]
            context = self.config.context_length
            if len(encoded) > context and not self.truncate_prompts:
                raise UserError(f"The {what} {prompt[:30]!r}... is {len(encoded)} tokens long, more than the model's "
                                f"context of {context} tokens; shorten it or pass --model.truncate_prompts true to "
                                f"keep its last {context} tokens.")
            ids.append(encoded)
        return ids

    def predict_step(self, batch: list[str], batch_idx: int) -> list[dict[str, Any]]:
        """Continue a batch of prompt strings (see `continue_texts`)."""
        return self.continue_texts(batch)

    def _log_samples(self) -> None:
        # Every rank generates (sharded models need all ranks in each forward); rank 0 shows them.
        if not self.sample_prompts or self.tokenizer is None:
            return
        log_samples(self, self.continue_texts(self.sample_prompts), f"samples at step {self.global_step}")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Embed the model config and tokenizer (plain JSON-able data) so the checkpoint is self-contained, plus
        the global RNG states and the train loss's running mean a resume restores."""
        trainer = attached_trainer(self)
        if trainer is not None and trainer.state.fn == "fit" and not all_finite(self.model.parameters()):
            raise NonFiniteError(f"The weights hold NaN or infinite values at step {self.global_step}, so no "
                                 f"checkpoint was written {_not_saved_fix(last_checkpoint(trainer))}")
        checkpoint[CHECKPOINT_KEY] = llm_lit_section(self.config, self.tokenizer, self.skipped_steps)
        checkpoint[RNG_KEY] = rng_states()
        checkpoint[TRAIN_LOSS_KEY] = self._train_loss_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the tokenizer from the checkpoint (refusing one that differs from the DataModule's); in fit, restore
        the global RNG states and the train loss's running mean too."""
        payload = checkpoint.get(CHECKPOINT_KEY)
        if not isinstance(payload, dict):
            raise UserError("This checkpoint was not written by llm_lit (it has no 'llm_lit' section); "
                            "pass a checkpoint saved by llm_lit fit.")
        self._check_architecture(checkpoint, payload)
        self.skipped_steps = int(payload.get("skipped_steps", 0))
        trainer = attached_trainer(self)
        if trainer is not None and trainer.state.fn == "fit":
            if RNG_KEY in checkpoint:
                set_rng_states(checkpoint[RNG_KEY])
            refuse_resume_without_ema(checkpoint, self.ema.enabled)
            if TRAIN_LOSS_KEY in checkpoint:
                self._restore_train_loss(checkpoint[TRAIN_LOSS_KEY], trainer.global_rank, trainer.world_size)
        saved = payload.get("tokenizer")
        if saved is None:
            return
        if self.tokenizer is None:
            self.set_tokenizer(tokenizer_from_dict(saved))
        elif not same_tokenizer(self.tokenizer, saved):
            raise UserError("The checkpoint's tokenizer differs from the data's tokenizer; use the same data "
                            "settings as the run that wrote the checkpoint (or the checkpoint's tokenizer).")

    def _train_loss_state(self) -> dict[str, torch.Tensor]:
        """The train loss's running mean since the last logging step (not logged yet), on every rank:
        `{"mean_value": (world_size,), "weight": (world_size,)}` (all ranks take part in the gather)."""
        gather = self.all_gather if attached_trainer(self) is not None else (lambda value: value)
        return {name: gather(value.detach()).reshape(-1).cpu() for name, value in self.train_loss.metric_state.items()}

    def _restore_train_loss(self, saved: dict[str, torch.Tensor], rank: int, world_size: int) -> None:
        """Put back the running mean saved by `_train_loss_state`, so the first train/loss logged after a
        resume averages the same steps as in the uninterrupted run (bitwise, for the same world size;
        with another, rank 0 takes the sums and the others start empty)."""
        for name, values in saved.items():
            if len(values) == world_size:
                value = values[rank]
            else:
                value = values.sum() if rank == 0 else torch.zeros_like(values[0])
            setattr(self.train_loss, name, value.clone())

    def _check_architecture(self, checkpoint: dict[str, Any], payload: dict[str, Any]) -> None:
        """Refuse, in one sentence, a checkpoint whose architecture or weights differ from this model's."""
        saved_config = payload.get("model_config")
        differences = config_differences(saved_config, self.config.to_dict()) if isinstance(saved_config, dict) else []
        if differences:
            raise UserError(f"The checkpoint was written by another architecture ({'; '.join(differences[:3])}); "
                            "use the model settings it was trained with, or a checkpoint of this model.")
        if "state_dict" not in checkpoint:
            return
        expected = {k: v for k, v in self.state_dict().items() if not k.startswith(("train_loss", "eval_"))}
        saved = {k: v for k, v in checkpoint.get("state_dict", {}).items() if not k.startswith(("train_loss", "eval_"))}
        problem = state_dict_mismatch(expected, saved)
        if problem:
            raise UserError(f"The checkpoint's weights do not fit this model ({problem}); pass an unmodified "
                            "checkpoint written by llm_lit fit for this architecture.")
