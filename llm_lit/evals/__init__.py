"""Evaluation: the scores the field compares, for any llm_lit model.

* `requests`: text requests as token ids, by lm-evaluation-harness's conventions;
* `scoring`: log-likelihoods of continuations, each shared context encoded once, no padding;
* `items`: multiple-choice items in HellaSwag's JSONL format; `next_line`: such a task built from a corpus;
* `multiple_choice`: `MultipleChoiceEval`, the callback that scores them at each validation;
* `harness`: `LlmLitLM`, the lm-evaluation-harness adapter (needs the `eval` extra; imported only when used).

May import: `errors`, `data`, `model`, `generation`, `training`, `tokenizer`; never `run` or `commands`
(the command layer opens checkpoints and hands the adapter a loaded model).
"""

from llm_lit.evals.multiple_choice import MultipleChoiceEval

__all__ = ["MultipleChoiceEval"]
