"""Issue 14 through `llm_lit`: special-token roles, a test split scored with a stride (equal to a direct
computation), samples on the console, the end-of-fit summary, hyperparameters in the logs, and a
one-line message for every bad value."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from llm_lit.run.checkpoint import load_checkpoint
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS
from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, cli_env, run_cli, scalars

ROLES = ["--data.special_tokens", '["<|endoftext|>", "<s>", "</s>"]', "--data.bos_token", "<s>",
         "--data.eos_token", "</s>"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 10-step fit on the debug config with BOS/EOS roles, a test file and a stride; returns its folder."""
    folder = tmp_path_factory.mktemp("use_cli")
    (folder / "test.txt").write_text(BUNDLED_CORPUS.read_text()[:3000])
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "10", *ROLES,
                   "--data.test_files", '["test.txt"]', "--data.eval_stride", "16",
                   "--trainer.enable_progress_bar", "false"], folder)
    assert fit.returncode == 0, fit.stderr[-3000:]
    (folder / "fit.out").write_text(fit.stdout)
    return folder


def test_fit_prints_samples_and_a_summary_and_logs_hyperparameters(run):
    out = (run / "fit.out").read_text()
    assert "---- samples at step 10 " in out and "\nROMEO:" in out
    summary = out[out.index("fit finished at step 10"):]
    assert "best val/loss" in summary and "val/bpb" in summary and "best-step10.ckpt" in summary
    assert "last checkpoint: " in summary and "last.ckpt" in summary and "logs: " in summary
    hparams = next((run / "runs").rglob("hparams.yaml")).read_text()
    for setting in ("d_model: 32", "eval_stride: 16", "bos: <s>", "lr: 0.01", "max_new_tokens: 16"):
        assert setting in hparams
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((run / "runs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert "_hparams_/session_start_info" in events.summary_metadata  # TensorBoard's HPARAMS tab lists the run
    assert [e.step for e in events.Scalars("hparams/best_val_loss")] == [0]


def test_the_checkpoint_carries_the_roles(run):
    _, tok = load_checkpoint(run / DEBUG_CKPTS / "last.ckpt")
    assert tok.roles == {"bos": "<s>", "eos": "</s>"}


def test_test_scores_the_test_file_with_a_stride_as_a_direct_computation(run):
    ckpt = run / DEBUG_CKPTS / "last.ckpt"
    result = run_cli(["test", "--ckpt_path", str(ckpt), "--data.test_files", '["test.txt"]',
                      "--data.eval_stride", "16", "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                      "--trainer.logger.init_args.save_dir", "test_root",
                      "--trainer.enable_progress_bar", "false"], run)
    assert result.returncode == 0, result.stderr[-3000:]
    [(_, got)] = scalars(run / "test_root", "test/loss")
    model, tok = load_checkpoint(ckpt)
    ids = [tok.role_id("bos")] + tok.encode((run / "test.txt").read_text()) + [tok.role_id("eos")]
    T, stride = model.config.context_length, 16
    nll = 0.0
    with torch.no_grad():
        for i in range(1, len(ids)):  # target i from the start of the first window that scores it
            start = 0 if i <= T else math.ceil((i - T) / stride) * stride
            logits = model(torch.tensor([ids[start:i]]))[0, -1].double()
            nll -= float(torch.log_softmax(logits, -1)[ids[i]])
    assert got == pytest.approx(nll / (len(ids) - 1), rel=1e-4)


@pytest.mark.parametrize("args, message", [
    (["test"], "test scores a separate test split; pass --data.test_files FILE"),
    (["validate", "--data.eval_stride", "0"], "eval_stride must be a positive integer (got 0)"),
    (["validate", "--data.eval_stride", "64"], "eval_stride must be at most context_length 32 (got 64)"),
    (["validate", "--data.eos_token", "</x>"], "data.eos_token '</x>' is not a special token of the given tokenizer"),
    (["test", "--data.test_files", '["missing.txt"]'], "The test file 'missing.txt' does not exist"),
    (["predict", "--data.prompts", '["a"]', "--model.sampling.stop_tokens", '["<x>"]'],
     "model.sampling.stop_tokens names '<x>', which is not a special token"),
])
def test_bad_values_are_one_line(run, tmp_path, monkeypatch, capsys, args, message):
    shutil.copytree(run / ".llm_lit_cache", tmp_path / ".llm_lit_cache")
    monkeypatch.chdir(tmp_path)
    ckpt = run / DEBUG_CKPTS / "last.ckpt"
    code = main([args[0], "--ckpt_path", str(ckpt), "--trainer.enable_progress_bar", "false",
                 "--trainer.logger", "false", *args[1:]])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_predict_starts_with_the_bos_and_stops_at_the_eos_role():
    from llm_lit.generation.sampling import SamplingConfig
    from llm_lit.model import ModelConfig
    from llm_lit.training.module import LanguageModel
    from tokenizer import Tokenizer

    vocab = {0: b"</s>", **{1 + b: bytes([b]) for b in range(256)}}  # </s> is id 0: what an all-zero logit row picks
    tok = Tokenizer(vocab, [], ["<|endoftext|>", "<s>", "</s>"], {"bos": "<s>", "eos": "</s>"})
    module = LanguageModel(ModelConfig(vocab_size=259, context_length=8, d_model=16, n_layers=1, n_heads=2),
                           sampling=SamplingConfig(max_new_tokens=3, temperature=0.0))
    module.set_tokenizer(tok)
    with torch.no_grad():
        module.model.ln_final.weight.zero_()
    bos = tok.role_id("bos")
    assert module.prompt_policy().encode_all(["ab", ""]) == [[bos] + tok.encode("ab"), [bos]]
    assert module.prompt_policy().stop_ids() == [0]
    assert module.continue_texts(["ab"]) == [{"prompt": "ab", "completion": "", "num_tokens": 0}]
    module.sampling = SamplingConfig(max_new_tokens=3, temperature=0.0, stop_tokens=[])
    assert module.continue_texts(["ab"])[0]["completion"] == "</s></s></s>"


@pytest.mark.parametrize("rich", [pytest.param(True, marks=pytest.mark.slow), False], ids=["rich-bar", "tqdm-bar"])
def test_the_summary_shows_with_the_default_progress_bar(tmp_path, rich):
    env = cli_env()
    if not rich:  # as if rich were not installed (a version too old for Lightning, and no module): the TQDM bar
        blocked = tmp_path / "blocked"
        (blocked / "rich").mkdir(parents=True)
        (blocked / "rich" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'rich'\")\n")
        (blocked / "rich-0.0.dist-info").mkdir()
        (blocked / "rich-0.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: rich\nVersion: 0.0\n")
        env["PYTHONPATH"] = str(blocked) + os.pathsep + env["PYTHONPATH"]
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "2", "--model.sample_prompts", "[]",
                   "--torch_threads", "1"], tmp_path, env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "fit finished at step 2" in fit.stdout and "last checkpoint: " in fit.stdout
