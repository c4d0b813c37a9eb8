"""Runs have a name and a folder: checkpoints, logs, the config and predictions of a run all land in
`runs/<run_name>/version_<N>/`; evaluating writes no version; resuming continues the version it came
from; a fresh fit, another corpus, --run_name and --out_dir never touch another run's files."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, run_cli, scalars
from llm_lit.commands.cli import main
from llm_lit.commands.lightning_cli import LLMLitCLI
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.run.checkpoint import read_checkpoint

QUIET = ["--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder where `llm_lit fit --config configs/debug.yaml` ran 10 steps (its token cache kept elsewhere)."""
    root = tmp_path_factory.mktemp("trained")
    cache = tmp_path_factory.mktemp("cache")
    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "10", "--data.cache_dir", str(cache),
                      *QUIET], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    (root / "cache").symlink_to(cache)  # for the copies below; not part of what fit wrote
    return root


def _copy(trained: Path, to: Path) -> Path:
    shutil.copytree(trained / "runs", to / "runs")
    return to


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fit_writes_everything_into_one_version_folder(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["cache", "runs"]  # no lightning_logs/, no checkpoints/
    assert [p.name for p in (trained / "runs" / "debug").iterdir() if not p.name.startswith(".")] == ["version_0"]  # and its lock
    version = trained / DEBUG_RUN
    assert (version / "config.yaml").is_file() and list(version.glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (version / "checkpoints").iterdir()) == ["best-step10.ckpt", "last.ckpt"]
    assert scalars(version, "val/loss") and not scalars(version, "hp_metric")


def test_evaluating_writes_no_version_and_resuming_continues_the_same_one(trained, tmp_path, monkeypatch, capsys):
    root = _copy(trained, tmp_path)
    monkeypatch.chdir(root)
    cache = ["--data.cache_dir", str(trained / "cache")]
    assert main(["validate", "--config", str(DEBUG_CONFIG), "--ckpt_path", "last", *cache, *QUIET]) == 0
    (root / "test.txt").write_text(BUNDLED_CORPUS.read_text()[:5000])
    assert main(["test", "--ckpt_path", str(DEBUG_CKPTS / "best-step10.ckpt"), "--data.test_files", '["test.txt"]',
                 *cache, *QUIET]) == 0
    assert re.search(r"test/loss\W+[0-9.]+", capsys.readouterr().out)  # evaluation prints its metrics
    # predict with a TQDM progress bar (what a fresh install without rich shows)
    assert main(["predict", "--config", str(DEBUG_CONFIG), "--ckpt_path", "last", "--data.prompts", '["ROMEO:"]',
                 "--model.sampling.max_new_tokens", "8", "--trainer.callbacks+=TQDMProgressBar"]) == 0
    out = capsys.readouterr().out
    lines = re.split(r"[\r\n]", out)
    assert any(line.startswith("ROMEO:") for line in lines), out  # on a line of its own, not after the bar
    assert (root / DEBUG_RUN / "predictions.jsonl").is_file()
    assert f"Wrote 1 continuation to {DEBUG_RUN / 'predictions.jsonl'}" in out

    result = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--ckpt_path", "last", "--trainer.max_steps", "15",
                      *cache, *QUIET], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in root.iterdir()) == ["runs", "test.txt"]  # test.txt: the test split given above
    assert [p.name for p in (root / "runs" / "debug").iterdir() if not p.name.startswith(".")] == ["version_0"]
    assert read_checkpoint(root / DEBUG_CKPTS / "last.ckpt")["global_step"] == 15
    steps = [s for s, _ in scalars(root / DEBUG_RUN, "train/loss")]
    assert min(steps) < 10 <= max(steps)  # the first run's curve and the resumed one's, in one version


def test_a_fresh_fit_another_corpus_and_out_dir_never_touch_an_earlier_run(trained, tmp_path, monkeypatch):
    root = _copy(trained, tmp_path)
    monkeypatch.chdir(root)
    first = _digest(root / DEBUG_CKPTS / "last.ckpt")
    short = ["--config", str(DEBUG_CONFIG), "--trainer.max_steps", "2", "--model.optimizer.warmup_steps", "1",
             "--data.cache_dir", str(trained / "cache"), *QUIET]
    assert main(["fit", *short]) == 0  # the same command again: a new version
    assert (root / "runs" / "debug" / "version_1" / "checkpoints" / "last.ckpt").is_file()

    (root / "mytext.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    assert main(["fit", *short, "--data.train_files", '["mytext.txt"]', "--data.vocab_size", "270"]) == 0
    assert (root / "runs" / "debug-mytext" / "version_0" / "checkpoints" / "last.ckpt").is_file()

    assert main(["fit", *short, "--out_dir", "elsewhere", "--run_name", "exp"]) == 0
    moved = root / "elsewhere" / "exp" / "version_0"
    # a run validates at its last step: its best checkpoint is of that step
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == ["best-step2.ckpt", "last.ckpt"]
    assert (moved / "config.yaml").is_file() and list(moved.glob("events.out.tfevents.*"))
    assert main(["fit", *short, "--out_dir", "elsewhere", "--run_name", "exp", "--ckpt_path", "last",
                 "--trainer.max_steps", "3"]) == 0
    assert read_checkpoint(moved / "checkpoints" / "last.ckpt")["global_step"] == 3

    assert _digest(root / DEBUG_CKPTS / "last.ckpt") == first
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["debug", "debug-mytext"]


def test_ckpt_path_last_without_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--ckpt_path", "last", "--run_name", "nothing", "--data.prompts", '["a"]']) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --ckpt_path last: no run named 'nothing' under 'runs' has a last.ckpt; pass --ckpt_path "
                   "FILE, or the --run_name (and --out_dir) of a trained run.")


def test_building_a_fit_creates_no_folder_and_picks_fp32_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = LLMLitCLI(args=["--config", str(DEBUG_CONFIG.parent / "shakespeare.yaml")], run=False)
    assert cli.trainer.precision == "32-true" and type(cli.trainer.accelerator).__name__ == "CPUAccelerator"
    assert cli.version == Path("runs") / "shakespeare" / "version_0"
    assert [Path(c.dirpath) for c in cli.trainer.checkpoint_callbacks] == [(cli.version / "checkpoints").resolve()] * 2
    assert not list(tmp_path.iterdir())  # nothing is written until the fit runs


def test_help_and_an_unknown_command_list_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "prepare", "eval", "chat", "serve", "export", "import", "tokenizer",
                 "accounting", "plot"):
        assert re.search(rf"^\s+{name}\s+\S", out, re.M), name
    assert main(["expor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: Unknown command 'expor'; did you mean 'export'? The commands are fit, validate, test, "
                   "predict, prepare, eval, chat, serve, export, import, tokenizer, accounting, plot (llm_lit --help says more).")
