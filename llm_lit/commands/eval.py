"""`llm_lit eval`: score a model on lm-evaluation-harness tasks, in place (no export).

    llm_lit eval --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --tasks shakespeare_next_line,shakespeare_ppl
    llm_lit eval --ckpt_path last.ckpt --tasks hellaswag,arc_easy,lambada_openai,wikitext --limit 500

The harness drives `llm_lit.evals.harness.LlmLitLM` over the checkpoint's own model and tokenizer
(an llm_lit checkpoint, a folder written by `llm_lit import`, or a Hugging Face folder). The
harness's table goes to stdout; its JSON to `--output`, by default `eval/<checkpoint>.json` in
the checkpoint's run version (else `eval_results.json` here); and, for a checkpoint of a run,
`eval/<task>/<metric>` at the checkpoint's step into that run's TensorBoard logs. The tasks
shipped with llm_lit (`llm_lit/evals/tasks/`) are always found; `--include_path` adds a folder
of your own task YAML files. Needs the `eval` extra: pip install 'llm_lit[eval]'.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

from llm_lit.errors import UserError

INSTALL = "pip install 'llm_lit[eval]'"


def require_harness() -> None:
    """`UserError` with the install line when lm-evaluation-harness is not installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserError(f"llm_lit eval needs lm-evaluation-harness (the 'lm-eval' package), which is not installed; "
                        f"{INSTALL}.") from None


def check_settings(tasks: str, include_path: Optional[str], limit: Optional[float], batch_size: int,
                   num_fewshot: Optional[int]) -> list[str]:
    """The task names of `--tasks`, after checking every setting that needs no file read."""
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise UserError("--tasks names no task; pass one or more, e.g. --tasks hellaswag,shakespeare_next_line.")
    if include_path is not None and not Path(include_path).expanduser().is_dir():
        raise UserError(f"--include_path '{include_path}' is not a folder; pass a folder of task YAML files.")
    if limit is not None and not limit > 0:
        raise UserError(f"--limit must be a positive number of documents per task (or a fraction below 1), "
                        f"got {limit}; pass e.g. --limit 100, or leave it out for every document.")
    if batch_size < 1:
        raise UserError(f"--batch_size must be a positive number of rows (got {batch_size}); pass e.g. 32.")
    if num_fewshot is not None and num_fewshot < 0:
        raise UserError(f"--num_fewshot must be 0 or more (got {num_fewshot}); pass e.g. --num_fewshot 5.")
    return names


def task_manager(include_path: Optional[str]) -> Any:
    """The harness's task index: its own tasks, llm_lit's shipped ones and `include_path`'s."""
    from lm_eval.tasks import TaskManager

    from llm_lit.evals.shipped_tasks import TASKS_FOLDER

    paths = [str(TASKS_FOLDER)] + ([str(Path(include_path).expanduser())] if include_path else [])
    return TaskManager(include_path=paths, verbosity="ERROR")


def check_task_names(names: list[str], known: list[str]) -> None:
    """`UserError` naming the nearest known tasks for the first unknown name."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
                "`lm_eval ls tasks` lists them, or add a folder of your own with --include_path."
            raise UserError(f"Unknown task '{name}'; {hint}")


def results_path(ckpt_path: str, output: Optional[str]) -> Path:
    """Where the results JSON goes: `output`, else `eval/<checkpoint>.json` in the checkpoint's run version,
    else `eval_results.json` in the working folder."""
    from llm_lit.run.folders import checkpoint_version

    if output:
        return Path(output).expanduser()
    version = checkpoint_version(ckpt_path)
    if version is not None:
        return version / "eval" / f"{Path(ckpt_path).stem}.json"
    return Path("eval_results.json")


def scalar_metrics(results: dict[str, Any]) -> dict[str, float]:
    """`eval/<task>/<metric>` -> value of every finite number in the harness's results (stderr left out; a
    filter other than `none` is appended: `eval/<task>/<metric>_<filter>`)."""
    scalars = {}
    for task, metrics in results.get("results", {}).items():
        for key, value in metrics.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or "stderr" in metric or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                suffix = "" if filter_name == "none" else f"_{filter_name}"
                scalars[f"eval/{task}/{metric}{suffix}"] = float(value)
    return scalars


def log_to_run(ckpt_path: str, scalars: dict[str, float]) -> Optional[Path]:
    """Write `scalars` into the TensorBoard logs of the run the checkpoint belongs to, at its step; returns the
    version folder (None for a checkpoint outside a run)."""
    from torch.utils.tensorboard import SummaryWriter

    from llm_lit.run.checkpoint import read_checkpoint
    from llm_lit.run.folders import checkpoint_version

    version = checkpoint_version(ckpt_path)
    if version is None or not Path(ckpt_path).is_file():
        return None
    step = int(read_checkpoint(ckpt_path, verify=False).get("global_step", 0))
    writer = SummaryWriter(log_dir=str(version))
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
    finally:
        writer.close()
    return version


def evaluate(ckpt_path: str, tasks: str, include_path: Optional[str] = None, limit: Optional[float] = None,
             batch_size: int = 32, num_fewshot: Optional[int] = None, output: Optional[str] = None,
             device: str = "auto", add_bos_token: Optional[bool] = None, seed: int = 1234) -> None:
    """Score a model on lm-evaluation-harness tasks (the harness's table on stdout, its JSON saved).

    Args:
        ckpt_path: An llm_lit checkpoint (.ckpt written by fit), a folder written by llm_lit import, or a Hugging Face model folder.
        tasks: Comma-separated task names, e.g. hellaswag,arc_easy,lambada_openai,wikitext or the shipped shakespeare_next_line,shakespeare_ppl.
        include_path: A folder of task YAML files of your own (the shipped tasks are always included).
        limit: Documents per task at most (a number below 1: that fraction of them); default every document.
        batch_size: Rows of one forward pass at most.
        num_fewshot: Examples put before each question (default: the task's own setting).
        output: Where to write the results JSON (default: eval/<checkpoint>.json in the checkpoint's run, else eval_results.json).
        device: 'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'.
        add_bos_token: Start every context with the BOS token (default: when the tokenizer has a BOS role, as predict does).
        seed: Seed of the harness's random choices (few-shot examples, sampling).
    """
    require_harness()
    names = check_settings(tasks, include_path, limit, batch_size, num_fewshot)
    manager = task_manager(include_path)
    check_task_names(names, manager.all_tasks)
    path = results_path(ckpt_path, output)
    from llm_lit.run.writable import check_writable_file

    check_writable_file(path, "results", "--output")

    import lm_eval
    from lm_eval.utils import make_table

    from llm_lit.commands.chat import load_for_chat
    from llm_lit.evals.harness import LlmLitLM

    model, tokenizer = load_for_chat(ckpt_path, device)
    lm = LlmLitLM(model, tokenizer, batch_size=batch_size, add_bos_token=add_bos_token)
    results = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=manager, random_seed=seed, numpy_random_seed=seed,
                                      torch_random_seed=seed, fewshot_random_seed=seed)
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    from tokenizer.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        json.dump({key: results[key] for key in ("results", "groups", "configs", "versions", "n-shot", "config")
                   if key in results}, f, indent=2, default=str)
    print(f"Wrote the results to {path}", file=sys.stderr)
    version = log_to_run(ckpt_path, scalar_metrics(results))
    if version is not None:
        print(f"Logged eval/<task>/<metric> to the run's TensorBoard logs in {version}", file=sys.stderr)


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit eval ARGS`; returns the exit code."""
    from llm_lit.commands.parsing import run_function

    return run_function("llm_lit eval", evaluate, argv)
