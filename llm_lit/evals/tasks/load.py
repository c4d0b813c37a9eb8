"""Datasets of the shipped tasks, read from the JSONL files beside this file (no download).

lm-evaluation-harness calls these through `custom_dataset: !function load.<name>` in a task's
YAML, with the YAML's `dataset_kwargs` (and the run's metadata) as keyword arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from llm_lit.evals.items import read_items

HERE = Path(__file__).resolve().parent


def multiple_choice(file: str, **_: Any) -> datasets.DatasetDict:
    """A HellaSwag-format JSONL file beside this one as the `validation` split (`ctx`, `endings`, `label`)."""
    items = read_items(HERE / file)
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list([item.to_json() for item in items])})


def texts(file: str, **_: Any) -> datasets.DatasetDict:
    """A JSONL file of `{"text": ...}` lines beside this one as the `validation` split."""
    with open(HERE / file, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})
