"""Reading README.md and docs/: the pages, their fenced blocks, and the shell commands in them."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from cli_helpers import REPO

#: Fence languages whose lines are shell commands.
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
#: Words that start a shell command: an untagged or `text` block holding a line that starts with one is refused.
COMMAND_WORDS = ("llm_lit ", "python ", "python3 ", "pip ", "tensorboard ", "$ ")
#: Shell operators that separate the commands of one line.
OPERATORS = {"|", "||", "&&", ";"}


def doc_pages() -> list[Path]:
    """README.md and every Markdown page under docs/ (new pages included), in a fixed order."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class FencedBlock:
    """One fenced code block of a Markdown page."""

    page: str           # path relative to the repository
    line: int           # 1-based line of the opening fence
    language: str       # the fence's info string's first word ('' when untagged)
    lines: tuple[str, ...]


def fenced_blocks(page: Path) -> list[FencedBlock]:
    """The fenced code blocks of `page` (``` or ~~~ fences, indented or not)."""
    blocks, opened, body = [], None, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if opened is None:
            match = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                opened, body = (match.group(1), number, match.group(2).lower()), []
        elif stripped.startswith(opened[0]) and stripped.strip(opened[0][0]) == "":
            blocks.append(FencedBlock(_shown(page), opened[1], opened[2], tuple(body)))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"{_shown(page)}:{opened[1]}: a fenced block is never closed"
    return blocks


def _shown(page: Path) -> str:
    """`page` as messages name it: relative to the repository when it lies inside it."""
    return str(page.relative_to(REPO)) if page.is_relative_to(REPO) else str(page)


@dataclass(frozen=True)
class DocCommand:
    """One shell command of the docs, its continuation lines joined."""

    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"

    @property
    def bare(self) -> str:
        """The command's words joined by single spaces, quotes and comments dropped: what `Rule.pattern` reads."""
        return " ".join(shlex.split(self.text, comments=True))

    def segments(self) -> list[list[str]]:
        """The words of each command of the line (split at `|`, `&&`, `||`, `;`), comments dropped."""
        words = shlex.split(self.text, comments=True)
        segments: list[list[str]] = [[]]
        for word in words:
            if word in OPERATORS:
                segments.append([])
            else:
                segments[-1].append(word)
        return segments

    def joined_with(self, segments: list[list[str]]) -> str:
        """This command's line with its segments replaced (same operators between them)."""
        operators = [w for w in shlex.split(self.text, comments=True) if w in OPERATORS]
        parts = [shlex.join(segments[0])]
        for operator, segment in zip(operators, segments[1:]):
            parts += [operator, shlex.join(segment)]
        return " ".join(parts)


def shell_commands(page: Path) -> list[DocCommand]:
    """The commands of `page`'s shell blocks; a block that holds commands without a shell tag is an error."""
    commands = []
    for block in fenced_blocks(page):
        if block.language not in SHELL_LANGUAGES:
            looks_like_shell = [line for line in block.lines if line.strip().startswith(COMMAND_WORDS)]
            assert block.language not in ("", "text") or not looks_like_shell, (
                f"{block.page}:{block.line}: this fenced block holds shell commands ({looks_like_shell[0].strip()!r}); "
                "tag it ```bash so that tests/docs/test_doc_commands.py runs them")
            continue
        pending, start = "", block.line
        for offset, line in enumerate(block.lines, start=1):
            text = line.strip()
            if block.language == "console":
                if not pending and not text.startswith("$ "):
                    continue  # console output
                text = text[2:] if not pending else text
            if not pending and (not text or text.startswith("#")):
                continue
            if not pending:
                start = block.line + offset
            if text.endswith("\\"):
                pending += text[:-1].rstrip() + " "
                continue
            commands.append(DocCommand(block.page, start, pending + text))
            pending = ""
        assert not pending, f"{block.page}:{start}: a command ends its block with a line continuation"
    return commands


def all_commands() -> list[DocCommand]:
    return [command for page in doc_pages() for command in shell_commands(page)]
