"""The pages a user reads hold together: short README, an index of docs/, links that resolve, YAML that parses,
fault-table tests that exist, and no internal issue number or path outside the repository anywhere a user reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cli_helpers import REPO
from doc_pages import doc_pages, fenced_blocks

#: What a user reads: the pages, the configs, the benchmarks (their help and output), the package (help texts,
#: messages, defaults) and the tokenizer. The test folder is not among them.
USER_FACING = ("README.md", "docs", "configs", "benchmarks", "llm_lit", "tokenizer")
#: An internal issue number, or a path outside the repository.
INTERNAL = re.compile(r"[Ii]ssues? [0-9]+|\.\./shared|/work/")


def _text_files() -> list[Path]:
    files = []
    for name in USER_FACING:
        path = REPO / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if "__pycache__" not in p.parts and p.suffix not in (".png", ".pyc", ".bin")]
    return files


def test_no_internal_issue_number_or_outside_path_where_a_user_reads() -> None:
    found = []
    for path in _text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            if INTERNAL.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not found, "say what the product does, without issue numbers or paths outside the repository:\n" + "\n".join(found)


def test_the_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; keep it under 300 and move the rest into docs/"


def test_the_quick_start_holds_exactly_the_two_commands() -> None:
    """tests/test_fresh_clone.py (slow) runs the Quick start's two ```bash blocks as written; .ci/run is the second."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]
    assert len(blocks) == 2, blocks
    assert blocks[0].endswith('pip install -e ".[plot]" && llm_lit fit --config configs/shakespeare.yaml'), blocks[0]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert blocks[1].endswith('pip install -e ".[test]" && python -m pytest -q') and "python -m pytest -q\n" in ci


def test_the_docs_index_lists_every_page() -> None:
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    pages = [p for p in sorted((REPO / "docs").iterdir()) if p.suffix in (".md", ".ipynb") and p.name != "README.md"]
    missing = [p.name for p in pages if f"]({p.name})" not in index]
    assert not missing, f"docs/README.md does not list {missing}; add a line for each page"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)}


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_every_yaml_block_parses() -> None:
    for page in doc_pages():
        for block in fenced_blocks(page):
            if block.language in ("yaml", "yml"):
                assert isinstance(yaml.safe_load("\n".join(block.lines)), dict), f"{block.page}:{block.line}"


def test_every_test_the_fault_table_names_exists() -> None:
    """`file.py::test_name` in docs/faults.md (in tests/faults/ unless a folder is named; `::name` alone: the
    file named before it in the same cell) is a test function of that file."""
    missing, named = [], 0
    for line in (REPO / "docs" / "faults.md").read_text(encoding="utf-8").splitlines():
        current = None
        for match in re.finditer(r"((?:tests/[\w/]+/)?test_\w+\.py)?::(test_\w+)", line):
            current = match.group(1) or current
            assert current, f"docs/faults.md: '::{match.group(2)}' follows no file name: {line[:100]}"
            path = REPO / current if current.startswith("tests/") else REPO / "tests" / "faults" / current
            named += 1
            if not path.is_file() or not re.search(rf"def {match.group(2)}\b", path.read_text(encoding="utf-8")):
                missing.append(f"{path.relative_to(REPO)}::{match.group(2)}")
    assert named > 50, named
    assert not missing, f"docs/faults.md names tests that do not exist: {missing}"
