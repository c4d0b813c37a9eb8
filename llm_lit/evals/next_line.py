"""A multiple-choice task any corpus yields: which line comes next?

For each of N places in a corpus's validation split, the question is the lines before it and
the choices are the true next line and three lines of about its length drawn from elsewhere
in the split, in
HellaSwag's JSONL format (`ctx`, `endings`, `label`). A context and an ending join with a new
line (the task's delimiter), where HellaSwag's join with a space. A model that has learnt the
corpus (who speaks after whom, how a sentence goes on, how long lines are) beats the chance
accuracy of one in four; an untrained one does not.

    items = next_line_items(validation_texts(["corpus.txt"]), NextLineTask(items=500))

The places and the distractors are a function of the text and the seed only.
"""

from __future__ import annotations

import bisect
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from llm_lit.data.splits import inspect_inputs, plan_splits
from llm_lit.errors import UserError
from llm_lit.evals.items import MultipleChoiceItem

#: What joins a context and an ending in this task (as in HellaSwag).
DELIMITER = " "
#: Distractors are drawn from the NEAR endings closest in length to the true one.
NEAR = 64
#: Words a line needs to be cut into a question and an ending.
MIN_WORDS = 4


@dataclass(frozen=True)
class NextLineTask:
    """How to build a next-line task.

    Args:
        items: Questions to build (fewer when the text has fewer places).
        context_lines: Lines before the true line that make the question.
        choices: Endings per question (the true line and choices - 1 drawn from elsewhere).
        seed: Seed of the places, the distractors and the true ending's position.
    """

    items: int = 500
    context_lines: int = 3
    choices: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name} must be at least {low} (got {getattr(self, name)!r})"
                    for name, low in (("items", 1), ("context_lines", 1), ("choices", 2))
                    if not isinstance(getattr(self, name), int) or getattr(self, name) < low]
        if problems:
            raise UserError("Invalid next-line task settings: " + "; ".join(problems) + "; fix these values.")


def validation_texts(train_files: Sequence[str | os.PathLike], val_files: Optional[Sequence[str | os.PathLike]] = None,
                     val_fraction: float = 0.1, special_tokens: Sequence[str] = ("<|endoftext|>",)) -> list[str]:
    """The text documents of the validation split, as the DataModule cuts it (`llm_lit.data.splits`): the
    `val_files`, else the last `val_fraction` of the training files. Token (.bin) files have no text and are
    left out."""
    train = inspect_inputs([str(f) for f in train_files], "training")
    val = inspect_inputs([str(f) for f in val_files], "validation") if val_files else []
    separator = special_tokens[0] if special_tokens else "\n\n"  # as the token cache joins files
    documents = plan_splits(train, val, val_fraction, len(separator.encode("utf-8")))["val"]
    texts = []
    for document in documents:
        if document.input.kind != "text":
            continue
        with open(document.input.path, "rb") as f:
            f.seek(document.start)
            texts.append(f.read(document.end - document.start).decode("utf-8", errors="replace"))
    if not texts:
        raise UserError("The validation split has no text (only token files); pass text files to build a "
                        "next-line task from, or a JSONL task file.")
    return texts


def next_line_items(texts: Sequence[str], task: NextLineTask = NextLineTask()) -> list[MultipleChoiceItem]:
    """Up to `task.items` questions from `texts` (see the module docstring), in the order of the text."""
    rng = random.Random(task.seed)
    documents = [text.split("\n") for text in texts]
    places = [(d, j) for d, lines in enumerate(documents) for j in range(task.context_lines, len(lines))
              if len(lines[j].split()) >= MIN_WORDS]
    if not places:
        raise UserError(f"The validation text has no line of at least {MIN_WORDS} words to build a next-words task "
                        "from; use a longer validation split or a JSONL task file.")
    chosen = sorted(rng.sample(places, min(task.items, len(places))))
    cuts = {place: _cut(documents[place[0]][place[1]], rng) for place in places}
    pool = sorted({rest for _, rest in cuts.values()}, key=lambda rest: (len(rest), rest))
    lengths = [len(rest) for rest in pool]
    if len(pool) < task.choices:
        raise UserError(f"The validation text has too few lines to build a next-words task ({len(pool)}); use a "
                        "longer validation split or a JSONL task file.")
    items = []
    for d, j in chosen:
        head, true_rest = cuts[(d, j)]
        # distractors of about the true ending's length (the nearest ones in a by-length order), so that neither
        # the sum of log-probabilities (shorter is likelier) nor its per-character mean gives it away
        middle = bisect.bisect_left(lengths, len(true_rest))
        low = max(0, min(middle - NEAR // 2, len(pool) - NEAR))
        distractors: list[str] = []
        while len(distractors) < task.choices - 1:
            rest = pool[low + rng.randrange(min(NEAR, len(pool)))]
            if rest != true_rest and rest not in distractors:
                distractors.append(rest)
        label = rng.randrange(task.choices)
        endings = distractors[:label] + [true_rest] + distractors[label:]
        context = "\n".join(documents[d][j - task.context_lines:j] + [head])
        items.append(MultipleChoiceItem(context, tuple(endings), label))
    return items


def _cut(line: str, rng: random.Random) -> tuple[str, str]:
    """`line` cut at a space between its words into (head, rest): at least one word before, two after."""
    words = line.split(" ")
    spaces = [i for i in range(1, len(words) - 1) if words[i - 1] and words[i] and
              len(" ".join(words[i:]).split()) >= 2 and " ".join(words[:i]).strip()]
    at = spaces[rng.randrange(len(spaces))] if spaces else len(words) // 2
    return " ".join(words[:at]), " ".join(words[at:])


def write_next_line_task(files: Sequence[str | os.PathLike], output: str | os.PathLike,
                         task: NextLineTask = NextLineTask(), val_fraction: float = 0.1) -> Path:
    """Build a next-line task from the validation split of `files` (their last `val_fraction`) and write it
    as HellaSwag-format JSONL at `output`; returns the path."""
    from llm_lit.evals.items import write_items

    return write_items(next_line_items(validation_texts(files, val_fraction=val_fraction), task), output)
