"""HellaSwag-format items and their bad lines, the next-line generator, the shipped task files, and the
MultipleChoiceEval callback's sharding (2 ranks sum to 1 process) and counting."""

from __future__ import annotations

import json

import pytest
import torch
from eval_helpers import TINY, bpe_tokenizer

from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.errors import UserError
from llm_lit.evals import MultipleChoiceEval
from llm_lit.evals.items import MultipleChoiceItem, read_items, write_items
from llm_lit.evals.multiple_choice import count_correct
from llm_lit.evals.next_line import NextLineTask, next_line_items, validation_texts
from llm_lit.evals.shipped_tasks import NEXT_LINE_FILE, PASSAGES_FILE, TASKS_FOLDER, write_shipped_tasks
from llm_lit.model import ModelConfig, TransformerLM

GOOD = {"ind": 4, "activity_label": "Roof", "ctx": "A man is on a roof. He", "endings": ["a", "b", "c", "d"], "label": 2}


def _file(tmp_path, lines):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_hellaswag_lines_and_a_limit(tmp_path):
    path = _file(tmp_path, [json.dumps(GOOD), json.dumps({**GOOD, "label": "1"}), json.dumps(GOOD)])
    items = read_items(path, limit=2)
    assert items == [MultipleChoiceItem(GOOD["ctx"], ("a", "b", "c", "d"), 2),
                     MultipleChoiceItem(GOOD["ctx"], ("a", "b", "c", "d"), 1)]
    assert read_items(write_items(items, tmp_path / "again.jsonl")) == items


@pytest.mark.parametrize("line, message", [
    ("{not json", "items.jsonl:2: not valid JSON"),
    (json.dumps([1, 2]), "items.jsonl:2: a JSON list, not an object"),
    (json.dumps({"ctx": "x", "endings": ["a", "b"]}), "items.jsonl:2: the object has no 'label'"),
    (json.dumps({**GOOD, "label": 4}), "items.jsonl:2: label 4 is out of range for 4 endings"),
    (json.dumps({**GOOD, "label": -1}), "items.jsonl:2: label -1 is out of range"),
    (json.dumps({**GOOD, "endings": "abcd"}), "items.jsonl:2: \"endings\" must be a list"),
    (json.dumps({**GOOD, "label": "two"}), "items.jsonl:2: \"label\" is 'two', not an index"),
])
def test_a_bad_line_is_one_sentence_naming_file_and_line(tmp_path, line, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")) as error:
        read_items(_file(tmp_path, [json.dumps(GOOD), line]))
    assert "\n" not in str(error.value)


def test_bad_files_and_limits(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_items(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="positive number of items"):
        read_items(_file(tmp_path, [json.dumps(GOOD)]), limit=0)
    with pytest.raises(UserError, match="positive number of items"):
        MultipleChoiceEval(limit=-3)
    with pytest.raises(UserError, match="holds no items"):
        read_items(_file(tmp_path, [""]))


def test_next_line_items_are_hellaswag_items_of_the_validation_split():
    texts = validation_texts([BUNDLED_CORPUS])
    assert texts[0] == BUNDLED_CORPUS.read_text(encoding="utf-8")[-len(texts[0]):]  # the last 10%
    items = next_line_items(texts, NextLineTask(items=50, seed=3))
    assert items == next_line_items(texts, NextLineTask(items=50, seed=3)) and len(items) == 50
    for item in items:
        assert len(item.endings) == 4 and len(set(item.endings)) == 4
        assert item.context + " " + item.endings[item.label] in texts[0]
    assert {item.label for item in items} == {0, 1, 2, 3}


def test_the_shipped_task_files_are_what_the_generator_builds(tmp_path):
    write_shipped_tasks(tmp_path)
    for name in (NEXT_LINE_FILE, PASSAGES_FILE):
        assert (tmp_path / name).read_bytes() == (TASKS_FOLDER / name).read_bytes(), name


def test_counting_follows_the_harness():
    items = [MultipleChoiceItem("c", ("aa", "bbbb"), 1), MultipleChoiceItem("c", ("x", "y"), 0)]
    # item 1: sums -2 vs -3 (acc picks 0), per char -1 vs -0.75 (acc_norm picks 1); item 2: a tie goes to the first
    assert count_correct(items, [-2.0, -3.0, -1.0, -1.0]) == (1, 2)


def test_two_ranks_sum_to_one_process():
    tok = bpe_tokenizer()
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig.llama(**TINY)).eval()
    items = next_line_items(validation_texts([BUNDLED_CORPUS]), NextLineTask(items=41))
    one = MultipleChoiceEval(limit=41)
    one.items = items
    ranks = [MultipleChoiceEval(limit=41) for _ in range(2)]
    for rank, callback in enumerate(ranks):
        callback.items = items
    whole = one.score(model, tok)
    shares = [callback.score(model, tok, rank, 2) for rank, callback in enumerate(ranks)]
    assert whole[2] == 41 and [s[2] for s in shares] == [21, 20]
    assert tuple(a + b for a, b in zip(*shares)) == whole
