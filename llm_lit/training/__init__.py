"""The training layer: the `LanguageModel` LightningModule, its callbacks (speed and metrics, EMA, the
time budget, the early stop in the decay, reporting, exact resume), precision defaults, silenced noise,
and `lightning_compat`, the one door to Lightning's private names.

May import: `errors`, `data`, `model`, `optim`, `interop`, `generation`, `tokenizer`. Never `run` or `commands`.
"""
