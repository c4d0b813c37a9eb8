"""`--model.init_from` (fine-tuning: the weights only, with the source's architecture and tokenizer, a fresh
optimizer, schedule and step 0) against `--ckpt_path` (resuming), and `llm_lit tokenizer --ckpt_path X --output F`,
through the CLI on configs/debug.yaml; every bad value in one line."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.optim.schedule import lr_at
from tokenizer import load_tokenizer

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, finished_run, one_line_error, run_cli, scalars

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps",
        "1", "--model.optimizer.warmup_steps", "2", "--torch_threads", "1"]
LAST = DEBUG_CKPTS / "last.ckpt"


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory, cache) -> Path:
    """The checkpoint of a 12-step run on the bundled corpus."""
    return finished_run([*ARGS, "--trainer.max_steps", "12", "--data.cache_dir", str(cache)],
                        tmp_path_factory.mktemp("source")) / LAST


def test_init_from_takes_the_weights_and_tokenizer_but_starts_a_fresh_run(source, cache, tmp_path):
    new_text = tmp_path / "new.txt"
    new_text.write_bytes(BUNDLED_CORPUS.read_bytes()[-40_000:])
    # a different depth on the command line: the source's architecture wins, dropout stays the run's own
    result = run_cli([*ARGS, "--trainer.max_steps", "4", "--data.cache_dir", str(cache), "--model.init_from", str(source),
                      "--data.train_files", f"[{new_text}]", "--model.config.n_layers", "3",
                      "--model.config.dropout", "0.1", "--run_name", "debug"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    tuned, original = _load(tmp_path / LAST), _load(source)
    assert tuned["global_step"] == 4
    assert all(s["step"] == 4 for s in tuned["optimizer_states"][0]["state"].values())  # fresh AdamW moments
    assert tuned["lr_schedulers"][0]["last_epoch"] == 4
    assert tuned["llm_lit"]["tokenizer"] == original["llm_lit"]["tokenizer"]
    saved_config, source_config = tuned["llm_lit"]["model_config"], original["llm_lit"]["model_config"]
    assert saved_config["n_layers"] == 2 and saved_config["dropout"] == 0.1
    assert {k: v for k, v in saved_config.items() if k != "dropout"} == \
           {k: v for k, v in source_config.items() if k != "dropout"}
    lrs = scalars(tmp_path / "runs", "lr")
    assert lrs[0][1] == pytest.approx(lr_at(1, 0.01, 0.001, 2, 4), rel=1e-6)  # the schedule starts over
    # the weights came along: the first loss is far below a fresh model's ln(vocab)
    first_loss = scalars(tmp_path / "runs", "train/loss")[0][1]
    assert first_loss < math.log(300) - 0.5


def test_resume_continues_the_source_run_where_init_from_starts_over(source, cache, tmp_path):
    copy = tmp_path / "source.ckpt"  # outside any run folder, so the resumed run writes a new version here
    shutil.copyfile(source, copy)
    result = run_cli([*ARGS, "--trainer.max_steps", "14", "--data.cache_dir", str(cache), "--ckpt_path", str(copy)],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _load(tmp_path / LAST)
    assert resumed["global_step"] == 14
    assert all(s["step"] == 14 for s in resumed["optimizer_states"][0]["state"].values())


@pytest.mark.slow
def test_init_from_then_resume_restores_the_resumed_checkpoint_over_the_initial_weights(source, cache, tmp_path):
    args = [*ARGS, "--data.cache_dir", str(cache), "--model.init_from", str(source)]
    assert run_cli([*args, "--trainer.max_steps", "3"], cwd=tmp_path).returncode == 0
    first = _load(tmp_path / LAST)
    result = run_cli([*args, "--trainer.max_steps", "5", "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = _load(tmp_path / LAST)
    assert first["global_step"] == 3 and resumed["global_step"] == 5
    assert all(s["step"] == 5 for s in resumed["optimizer_states"][0]["state"].values())


@pytest.mark.slow
def test_init_from_a_hugging_face_folder_takes_its_weights_and_tokenizer(source, cache, tmp_path):
    from llm_lit.run.checkpoint import model_state_dict
    from llm_lit.run.init_from import read_initial_weights

    hf = tmp_path / "hf"
    assert run_cli(["export", "--ckpt_path", str(source), "--output", str(hf)], cwd=tmp_path).returncode == 0
    initial, original = read_initial_weights(hf), _load(source)
    for name, tensor in model_state_dict(original).items():
        torch.testing.assert_close(initial.state_dict[name], tensor, rtol=0, atol=1e-6)
    result = run_cli([*ARGS, "--trainer.max_steps", "3", "--data.cache_dir", str(cache), "--model.init_from", str(hf)],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    tuned = _load(tmp_path / LAST)
    assert tuned["global_step"] == 3
    assert tuned["llm_lit"]["tokenizer"] == original["llm_lit"]["tokenizer"]
    assert scalars(tmp_path / "runs", "train/loss")[0][1] < math.log(300) - 0.5


def test_tokenizer_command_writes_the_checkpoints_tokenizer(source, tmp_path):
    out = tmp_path / "tok.json"
    result = run_cli(["tokenizer", "--ckpt_path", str(source), "--output", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Wrote the 300-token tokenizer" in result.stdout
    assert load_tokenizer(out).to_dict() == _load(source)["llm_lit"]["tokenizer"]


# ---------------------------------------------------------------------- bad values, in-process
@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.ckpt", "model.init_from '{p}' does not exist; pass an llm_lit checkpoint (.ckpt) or a Hugging Face model folder."),
    (lambda d: d, "model.init_from '{p}' is a folder without config.json; pass an llm_lit checkpoint (.ckpt) or a Hugging Face model folder."),
    (lambda d: _write(d / "bad.ckpt", b"not a checkpoint"), "The checkpoint '{p}' is truncated or corrupt"),
])
def test_a_bad_init_from_is_one_line(capsys, tmp_path, monkeypatch, make, message):
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    path = make(tmp_path)
    err = one_line_error(["fit", "--config", str(DEBUG_CONFIG), "--model.init_from", str(path)], capsys, alone=True)
    assert err.startswith("error: " + message.format(p=path)), err


@pytest.mark.parametrize("args, message", [
    (["--ckpt_path", "{d}/missing.ckpt", "--output", "{d}/t.json"],
     "error: The checkpoint '{d}/missing.ckpt' does not exist; pass a .ckpt file written by llm_lit fit (or a Hugging Face model folder)."),
    (["--ckpt_path", "{src}", "--output", "{d}"],
     "error: --output '{d}' is a folder; pass the path of the JSON file to write, e.g. {d}/tokenizer.json."),
    (["--ckpt_path", "{src}"], "error: the following arguments are required: output; see llm_lit tokenizer --help."),
])
def test_a_bad_tokenizer_command_is_one_line(capsys, tmp_path, monkeypatch, source, args, message):
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    fill = {"d": str(tmp_path), "src": str(source)}
    err = one_line_error(["tokenizer", *[a.format(**fill) for a in args]], capsys, alone=True)
    assert err.startswith(message.format(**fill)), err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
