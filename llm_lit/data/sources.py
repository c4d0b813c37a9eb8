"""`DataSource`: one named part of a training mixture (its files, weight and validation part), and the
check of a list of them, every problem in one sentence.

    data:
      sources:
        - {name: web, files: ["data/fineweb/*.parquet"], weight: 0.7}
        - {name: code, files: ["data/code/*.jsonl.zst"], weight: 0.2, text_field: content}
        - {name: books, files: [books.txt], weight: 0.1, val_files: [books_valid.txt]}

A plain `data.train_files` list is the one unnamed source of weight 1 (split names "train" and
"val" in the cache, as before sources existed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from llm_lit.errors import UserError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class DataSource:
    """One source of a training mixture.

    Args:
        name: Name of the source (letters, digits, '-', '_', '.'): its validation figures are logged as val/<name>/loss and val/<name>/bpb.
        files: Its training files: text, .bin token files, .jsonl/.jsonl.gz/.jsonl.zst, .parquet, .arrow, datasets.save_to_disk folders, globs, and s3://, gs://, https://, hf:// URLs.
        weight: Its share of the training windows is weight / (sum of the weights); also its share of the tokenizer's training sample.
        val_files: Its validation files (default: the last val_fraction of its files).
        val_fraction: Share of the source held out for validation when it has no val_files (default: data.val_fraction).
        text_field: Column (Parquet, Arrow) or key (JSONL) holding each record's text (default: data.text_field).
    """

    name: str
    files: list[str]
    weight: float = 1.0
    val_files: Optional[list[str]] = None
    val_fraction: Optional[float] = None
    text_field: Optional[str] = None

    @classmethod
    def of(cls, value: Any) -> "DataSource":
        """`value` as a DataSource (a DataSource, or a dict of its fields as a YAML file gives it)."""
        if isinstance(value, DataSource):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise UserError(f"data.sources: unknown key '{unknown[0]}' in {value!r}; the keys are "
                                f"{', '.join(cls.__dataclass_fields__)}.")
            return cls(**value)
        raise UserError(f"data.sources: {value!r} is not a source; write each as {{name: ..., files: [...], weight: ...}}.")

    def resolved(self, val_fraction: float, text_field: str) -> "DataSource":
        """A copy with the data-wide defaults filled in."""
        return replace(self, val_fraction=val_fraction if self.val_fraction is None else self.val_fraction,
                       text_field=text_field if self.text_field is None else self.text_field,
                       files=list(self.files), val_files=list(self.val_files) if self.val_files else None)


def default_source(train_files: Sequence[str], val_files: Optional[Sequence[str]], val_fraction: float,
                   text_field: str) -> DataSource:
    """The one unnamed source of a plain `train_files` list (weight 1)."""
    return DataSource("", list(train_files), 1.0, list(val_files) if val_files else None, val_fraction, text_field)


def check_sources(sources: Sequence[Any]) -> list[DataSource]:
    """The sources as `DataSource`s; `UserError` listing every problem (names, files, weights, fractions)."""
    if not sources:
        raise UserError("data.sources is empty; list at least one source ({name: ..., files: [...]}) or use "
                        "data.train_files.")
    parsed = [DataSource.of(s) for s in sources]
    problems: list[str] = []
    seen: set[str] = set()
    for i, s in enumerate(parsed):
        label = f"source {i + 1}" + (f" ('{s.name}')" if isinstance(s.name, str) and _NAME.fullmatch(s.name) else "")
        if not isinstance(s.name, str) or not _NAME.fullmatch(s.name):
            problems.append(f"{label} needs a name of letters, digits, '-', '_' or '.' (got {s.name!r})")
        elif s.name in seen:
            problems.append(f"two sources are named '{s.name}' (names must differ)")
        seen.add(s.name if isinstance(s.name, str) else "")
        if isinstance(s.files, str) or not s.files:
            problems.append(f"{label} has no files (give a list: files: [a.parquet, 'b/*.jsonl'])")
        weight = s.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            problems.append(f"{label} has weight {weight!r} (a weight must be a number > 0)")
        if s.val_fraction is not None and not (isinstance(s.val_fraction, (int, float)) and 0 < s.val_fraction < 1):
            problems.append(f"{label} has val_fraction {s.val_fraction!r} (it must be between 0 and 1)")
        if isinstance(s.val_files, str):
            problems.append(f"{label} has val_files as one string (give a list)")
        if s.text_field is not None and (not isinstance(s.text_field, str) or not s.text_field):
            problems.append(f"{label} has text_field {s.text_field!r} (a column or key name)")
    if problems:
        raise UserError("Invalid data.sources: " + "; ".join(problems) + "; fix these entries.")
    return parsed


def split_name(split: str, source: str) -> str:
    """The cache's name of a source's split: "train" for the unnamed source, "train/<name>" otherwise."""
    return f"{split}/{source}" if source else split
