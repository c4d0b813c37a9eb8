"""The corpora a benchmark reads: the bundled one by default, the public ones of docs/results.md with `--data-dir`.

    from corpora import add_data_dir_argument, corpus_file
    add_data_dir_argument(parser)                        # --data-dir, default llm_lit/data/corpora/
    path = corpus_file(args.data_dir, "enwiki_train.txt")

A file the folder lacks is replaced by the bundled tinyshakespeare.txt, said in one line, so every
benchmark runs in any clone; docs/results.md names the public corpora that reproduce its figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED_DIR = REPO / "llm_lit" / "data" / "corpora"
BUNDLED = BUNDLED_DIR / "tinyshakespeare.txt"
_said: set[str] = set()


def add_data_dir_argument(parser: argparse.ArgumentParser, needs: str = "") -> None:
    """Add `--data-dir` to `parser`; `needs` names the files the benchmark reads from it (for the help text)."""
    parser.add_argument("--data-dir", type=Path, default=BUNDLED_DIR,
                        help=f"folder of the corpora{' (' + needs + ')' if needs else ''}; default: the bundled "
                             "corpus's folder, llm_lit/data/corpora/, whose tinyshakespeare.txt stands in for any file "
                             "it lacks. The public corpora behind the published figures: docs/results.md")


def corpus_file(data_dir: Path, name: str) -> Path:
    """`data_dir/name`, or the bundled corpus when that file does not exist (said once per name)."""
    path = Path(data_dir) / name
    if path.is_file():
        return path
    if name not in _said:
        _said.add(name)
        print(f"note: {name} is not in {data_dir}; the bundled {BUNDLED.name} stands in for it "
              "(pass --data-dir with the public corpora of docs/results.md to reproduce its figures)", flush=True)
    return BUNDLED
