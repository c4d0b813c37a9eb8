"""Multiple-choice items in HellaSwag's published JSONL format: read, check and write them.

One JSON object a line, with at least

    {"ctx": "A man is sitting on a roof. He", "endings": ["is using wrap ...", "...", "...", "..."], "label": 3}

(llm.c's `hellaswag_val.jsonl` has these and more: `ind`, `activity_label`, `ctx_a`, `ctx_b`, ...;
the extra keys are ignored). `label` is the index of the true ending (an integer, or a string of
one, as the Hugging Face copy writes it). Every problem of a file is one sentence naming the file
and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from llm_lit.errors import UserError
from tokenizer.atomic import atomic_write


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question: a context, its candidate endings, and the index of the true one."""

    context: str
    endings: tuple[str, ...]
    label: int

    def to_json(self) -> dict:
        """The item as HellaSwag's JSONL writes it (`ctx`, `endings`, `label`)."""
        return {"ctx": self.context, "endings": list(self.endings), "label": self.label}


def read_items(path: str | os.PathLike, limit: Optional[int] = None, what: str = "multiple-choice file") -> list[MultipleChoiceItem]:
    """The first `limit` items (all with None) of a HellaSwag-format JSONL file; `UserError` naming file:line
    for a line that is not such an item."""
    path = Path(path).expanduser()
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise UserError(f"The item limit must be a positive number of items (got {limit!r}); pass e.g. 500, "
                        "or leave it unset for every item.")
    if not path.is_file():
        raise UserError(f"The {what} '{path}' does not exist; pass the path of a JSONL file in HellaSwag's format "
                        "(one {\"ctx\", \"endings\", \"label\"} object a line).")
    items: list[MultipleChoiceItem] = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, start=1):
                if limit is not None and len(items) >= limit:
                    break
                if line.strip():
                    items.append(parse_item(line, f"{path}:{number}"))
        except UnicodeDecodeError:
            raise UserError(f"The {what} '{path}' is not UTF-8 text; pass a JSONL file in HellaSwag's format.") from None
    if not items:
        raise UserError(f"The {what} '{path}' holds no items; pass a JSONL file with one "
                        "{\"ctx\", \"endings\", \"label\"} object a line.")
    return items


def parse_item(line: str, where: str) -> MultipleChoiceItem:
    """One JSONL line as an item; `where` (`file:line`) starts every error message."""
    fix = "each line must be one object with \"ctx\" (text), \"endings\" (a list of texts) and \"label\" (an index)"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: not valid JSON ({e.msg}); {fix}.") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: a JSON {type(record).__name__}, not an object; {fix}.")
    missing = [key for key in ("ctx", "endings", "label") if key not in record]
    if missing:
        raise UserError(f"{where}: the object has no {', '.join(repr(k) for k in missing)}; {fix}.")
    context, endings, label = record["ctx"], record["endings"], record["label"]
    if not isinstance(context, str):
        raise UserError(f"{where}: \"ctx\" is a {type(context).__name__}, not text; {fix}.")
    if not isinstance(endings, list) or len(endings) < 2 or not all(isinstance(e, str) and e for e in endings):
        raise UserError(f"{where}: \"endings\" must be a list of at least two non-empty texts (got {str(endings)[:60]}); {fix}.")
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int):
        raise UserError(f"{where}: \"label\" is {label!r}, not an index; {fix}.")
    if not 0 <= label < len(endings):
        raise UserError(f"{where}: label {label} is out of range for {len(endings)} endings; labels count from 0 "
                        f"(0 to {len(endings) - 1}).")
    return MultipleChoiceItem(context, tuple(endings), label)


def write_items(items: Iterable[MultipleChoiceItem], path: str | os.PathLike) -> Path:
    """Write `items` as HellaSwag-format JSONL (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        for item in items:
            f.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
    return path
