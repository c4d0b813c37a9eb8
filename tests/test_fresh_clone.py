"""The first hour, on a fresh clone: the README's two commands, then `predict` and `llm_lit plot`.

The clone is the repository's files as `git clone` would give them (tracked files, plus new files
not yet committed and not ignored), in a new folder. The two commands are read from README.md's
"Quick start" section and run as written, in bash, from the clone: each creates `.venv` with
`python3 -m venv` and installs into it (torch from the machine's wheel cache when there is one).
Only the pytest run of command 2 is narrowed, to one quick test file, through PYTEST_ADDOPTS: the
whole suite is what `.ci/run` runs. Then the README's `predict` and `llm_lit plot`, in the clone's venv.

Checked: every command succeeds; the fit reaches the README's validation figure and prints none of
the silenced Lightning messages; the plot is drawn from the fit's run, into that run's folder (not
from an empty folder left by predict, and not over the tracked docs/curves.png); and the clone's
`git status` is clean afterwards: nothing tracked changed, nothing untracked outside .gitignore.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_helpers import LIGHTNING_NOISE, REPO, scalars

PREDICT = """llm_lit predict --config configs/shakespeare.yaml --ckpt_path last --data.prompts '["ROMEO:"]'"""
PLOT = "llm_lit plot"
QUICK_TESTS = "tests/run/test_run_dir.py"


def readme_commands(readme: str) -> list[str]:
    """The ```bash blocks of README.md's "Quick start" section, in order."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def fresh_clone(to: Path) -> Path:
    """The files `git clone` of this working tree would give (uncommitted edits and new files included), as a
    new git repository with one commit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not os.path.lexists(source):  # deleted in the working tree, not yet committed
            continue
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, to / name, follow_symlinks=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run([*git, *step], cwd=to, check=True, capture_output=True)
    return to


def bash(command: str, cwd: Path, log: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run `command` in bash from `cwd`, fail with its output's end if it fails; returns what it printed."""
    result = subprocess.run(["bash", "-c", f"set -eo pipefail\n{command}"], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**_clean_env(), **(env or {})})
    printed = result.stdout + result.stderr
    log.write_text(printed)
    assert result.returncode == 0, f"{command}\n-> exit {result.returncode}:\n{printed[-4000:]}"
    return printed


def _clean_env() -> dict[str, str]:
    """This process's environment without what points Python at this repository or at the test's venv."""
    unset = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    return env


@pytest.mark.slow
def test_the_readme_commands_then_predict_and_plot_on_a_fresh_clone(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    assert (REPO / QUICK_TESTS).is_file(), QUICK_TESTS  # (command 2 runs only these tests, to keep this one short)
    clone = fresh_clone(tmp_path / "llm_lit")
    install_and_fit, install_and_test = readme_commands((clone / "README.md").read_text())
    # Fail in a second, not after the fit: `llm_lit plot` needs matplotlib, which command 1 must install.
    assert '".[plot]"' in install_and_fit, "README command 1 must install the plot extra: pip install -e \".[plot]\""
    curves = (clone / "docs" / "curves.png").read_bytes()

    printed = bash(install_and_fit, clone, tmp_path / "command1.log", timeout=3600)
    for noise in LIGHTNING_NOISE:
        assert noise not in printed, noise
    run = clone / "runs" / "shakespeare" / "version_0"
    bpb = scalars(run, "val/bpb")
    # validations every 250 steps of those that fit in the time budget, and one at the run's last step
    assert len(bpb) >= 3 and bpb[-1][1] < 2.5, bpb

    bash(f". .venv/bin/activate && {PREDICT}", clone, tmp_path / "predict.log", timeout=600)
    bash(install_and_test, clone, tmp_path / "command2.log", timeout=3600, env={"PYTEST_ADDOPTS": QUICK_TESTS})
    printed = bash(f". .venv/bin/activate && {PLOT}", clone, tmp_path / "plot.log", timeout=600)

    assert "Wrote runs/shakespeare/version_0/curves.png" in printed
    figure = run / "curves.png"
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 20_000
    assert (run / "predictions.jsonl").is_file()
    assert sorted(p.name for p in (clone / "runs").iterdir()) == ["shakespeare"]
    # the run lock's file stays beside the version, by design (llm_lit/run/lock.py)
    assert sorted(p.name for p in (clone / "runs" / "shakespeare").iterdir()) == [".version_0.lock", "version_0"]
    assert (clone / "docs" / "curves.png").read_bytes() == curves
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == "", status.stdout  # every file the commands wrote is ignored by .gitignore
