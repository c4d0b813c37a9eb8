"""The two tasks shipped with llm_lit (`llm_lit/evals/tasks/`), built from the bundled corpus's validation split.

* `shakespeare_next_line`: a multiple-choice task (`next_line.py`), scored by acc and acc_norm;
* `shakespeare_ppl`: passages of the split scored whole (perplexity), as the harness's wikitext is.

Both need no download, so `llm_lit eval` and its tests run offline; a test keeps the committed
JSONL files equal to what `write_shipped_tasks` builds.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.evals.items import write_items
from llm_lit.evals.next_line import NextLineTask, next_line_items, validation_texts
from tokenizer.atomic import atomic_write

#: The folder of the shipped tasks' YAML and JSONL files (`llm_lit eval` always includes it).
TASKS_FOLDER = Path(__file__).resolve().parent / "tasks"
NEXT_LINE_FILE = "shakespeare_next_line.jsonl"
PASSAGES_FILE = "shakespeare_passages.jsonl"
#: Questions of the multiple-choice task, passages of the perplexity task.
NEXT_LINE_ITEMS = 300
PASSAGES = 40


def passages(texts: list[str], count: int) -> list[str]:
    """`count` speeches (blank-line separated blocks of at least three lines), evenly spaced through `texts`."""
    blocks = [block.strip("\n") for text in texts for block in text.split("\n\n")]
    blocks = [block for block in blocks if block.count("\n") >= 2]
    step = max(len(blocks) // count, 1)
    return blocks[::step][:count]


def write_shipped_tasks(folder: str | Path = TASKS_FOLDER) -> list[Path]:
    """Write both tasks' JSONL files into `folder`; returns their paths."""
    folder = Path(folder)
    texts = validation_texts([BUNDLED_CORPUS])
    next_line = write_items(next_line_items(texts, NextLineTask(items=NEXT_LINE_ITEMS, seed=0)), folder / NEXT_LINE_FILE)
    with atomic_write(folder / PASSAGES_FILE) as f:
        for text in passages(texts, PASSAGES):
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return [next_line, folder / PASSAGES_FILE]


if __name__ == "__main__":
    for path in write_shipped_tasks():
        print(f"wrote {path}")
