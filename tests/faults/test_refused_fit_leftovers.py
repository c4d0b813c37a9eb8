"""A fit refused after Lightning set up its logger (by the data step, or a refused resume) leaves nothing behind:
no version folder holding an empty events file, no extra events file in the version it meant to continue."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import DEBUG_CONFIG
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS

VERSION = Path("runs") / "debug-small" / "version_0"


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    (tmp_path / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    return tmp_path


def fit_args(*extra: str) -> list[str]:
    return ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", '["small.txt"]', "--data.vocab_size", "270",
            "--trainer.max_steps", "5", "--trainer.enable_progress_bar", "false", "--torch_threads", "1", *extra]


def _refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_a_fit_refused_by_the_data_step_leaves_no_version_folder(workdir, capsys):
    line = _refused(fit_args("--data.vocab_size", "100000"), capsys)
    assert "fewer than --data.vocab_size 100000" in line
    assert not [p for p in workdir.glob("runs/*/version_*") if p.is_dir()]


def test_a_refused_resume_adds_nothing_to_the_version_it_meant_to_continue(workdir, capsys):
    assert main(fit_args()) == 0
    capsys.readouterr()
    before = sorted(p.relative_to(workdir) for p in (workdir / VERSION).rglob("*"))
    line = _refused(fit_args("--ckpt_path", "last", "--trainer.max_steps", "8", "--data.vocab_size", "280"), capsys)
    assert line.startswith("error: ")
    assert sorted(p.relative_to(workdir) for p in (workdir / VERSION).rglob("*")) == before
