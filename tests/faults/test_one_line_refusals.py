"""Inputs that used to end in a traceback, or silently in something else than asked, are one line naming the
value and the fix (exit 2); a chat session refuses a bad line or setting and goes on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.run.checkpoint import write_checkpoint
from tokenizer import Tokenizer, train_bpe
from tokenizer.errors import TokenizerError

HUGE_SEED = "100000000000000000000000"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    folder = tmp_path_factory.mktemp("tok")
    (folder / "c.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:30_000])
    vocab, merges = train_bpe(folder / "c.txt", 300, ["<|endoftext|>"])
    return Tokenizer(vocab, merges, ["<|endoftext|>"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer) -> Path:
    """A tiny untrained model with its tokenizer, as `llm_lit import` writes it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    write_checkpoint(TransformerLM(ModelConfig(vocab_size=300, context_length=32, d_model=32, n_layers=1, n_heads=2)),
                     tokenizer, path)
    return path


@pytest.fixture()
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    return tmp_path


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI in-process; assert exit code 2 and a single `error: ...` line without a traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and last.endswith("."), err[-2000:]
    return last


def test_a_seed_beyond_what_a_generator_takes_is_one_line(workdir, capsys, checkpoint):
    err = one_line_error(["predict", "--ckpt_path", str(checkpoint), "--data.prompts", '["a"]',
                          "--model.sampling.seed", HUGE_SEED, "--trainer.enable_progress_bar", "false"], capsys)
    assert f"seed must be a whole number from 0 to 2**64 - 1 or None (got {HUGE_SEED})" in err
    err = one_line_error(["chat", "--ckpt_path", str(checkpoint), "--seed", HUGE_SEED], capsys)
    assert f"seed must be a whole number from 0 to 2**64 - 1 or None (got {HUGE_SEED})" in err


def test_a_prompts_file_that_is_not_utf8_is_one_line_naming_the_byte(workdir, capsys, checkpoint):
    (workdir / "prompts.txt").write_bytes(b"ROMEO:\nJU\xffLIET:\n")
    err = one_line_error(["predict", "--ckpt_path", str(checkpoint), "--data.prompts_file", "prompts.txt",
                          "--trainer.enable_progress_bar", "false"], capsys)
    assert err == ("error: The prompts file 'prompts.txt' is not UTF-8 text (bad byte 0xff at byte offset 9, line 2); "
                   "convert it to UTF-8 (e.g. iconv -t UTF-8).")


def _chat(monkeypatch, capsys, checkpoint: Path, piped: bytes) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(piped), encoding="utf-8"))
    code = main(["chat", "--ckpt_path", str(checkpoint), "--temperature", "0", "--max_new_tokens", "3",
                 "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def test_chat_skips_a_line_that_is_not_utf8_and_goes_on(workdir, monkeypatch, capsys, checkpoint):
    code, out, err = _chat(monkeypatch, capsys, checkpoint, b"RO\xffMEO\nJULIET:\n")
    assert code == 0 and "Traceback" not in err
    assert ("error: the line is not UTF-8 text (byte 0xff at character 2), so it was skipped; type or pipe UTF-8 "
            "text.") in err.splitlines()
    assert len(out.splitlines()) == 1  # JULIET: was answered


def test_chat_refuses_a_huge_seed_and_goes_on(workdir, monkeypatch, capsys, checkpoint):
    code, out, err = _chat(monkeypatch, capsys, checkpoint, f"/seed {HUGE_SEED}\n/seed 7\nhello\n".encode())
    assert code == 0 and "Traceback" not in err
    assert (f"error: /seed {HUGE_SEED}: seed must be a whole number from 0 to 2**64 - 1 or None (got {HUGE_SEED}); "
            "e.g. /seed 1.") in err.splitlines()
    assert "(seed = 7)" in err and len(out.splitlines()) == 1


@pytest.mark.parametrize("setting", ["train_files", "val_files", "test_files"])
def test_an_empty_list_of_files_is_refused_naming_the_setting(workdir, capsys, setting):
    err = one_line_error(["fit", "--config", str(Path(__file__).parents[2] / "configs" / "debug.yaml"),
                          f"--data.{setting}", "[]"], capsys)
    assert f"{setting} is an empty list (did a file pattern match nothing?); list at least one file, or leave " \
           f"{setting} unset" in err
    assert not (workdir / ".llm_lit_cache").exists() and not (workdir / "runs").exists()


def test_a_tokenizer_file_with_an_id_gap_is_refused_when_read(tmp_path, tokenizer):
    from tokenizer import load_tokenizer

    tokenizer.save(tmp_path / "tok.json")
    d = json.loads((tmp_path / "tok.json").read_text())
    d["vocab"]["100000"] = d["vocab"].pop("299")
    (tmp_path / "tok.json").write_text(json.dumps(d))
    with pytest.raises(TokenizerError, match=r"has no token with id 299 though its ids run up to 100000; every id from "
                                             r"0 to the largest must be a token"):
        load_tokenizer(tmp_path / "tok.json")


def test_the_saved_config_records_the_vocabulary_the_model_was_built_with(workdir, capsys, tokenizer):
    import yaml

    (workdir / "small.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:60_000])
    tokenizer.save(workdir / "tok.json")  # 300 ids, while data.vocab_size says 270
    argv = ["fit", "--config", str(Path(__file__).parents[2] / "configs" / "debug.yaml"), "--data.train_files",
            '["small.txt"]', "--data.tokenizer_path", "tok.json", "--data.vocab_size", "270", "--trainer.max_steps", "1",
            "--model.optimizer.warmup_steps", "0", "--trainer.enable_progress_bar", "false", "--torch_threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    saved = yaml.safe_load((workdir / "runs" / "debug-small" / "version_0" / "config.yaml").read_text())
    assert saved["data"]["vocab_size"] == 300
    last = torch.load(workdir / "runs" / "debug-small" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["llm_lit"]["model_config"]["vocab_size"] == 300


@pytest.mark.parametrize("yaml_text, key, shown", [("data: 5\n", "data", "5"), ("trainer: 5\n", "trainer", "5"),
                                                   ("model:\n  config: 7\n", "model.config", "7"),
                                                   ("data:\n", "data", "null")],
                         ids=["data", "trainer", "model.config", "empty-data"])
def test_a_config_section_that_is_not_a_mapping_is_refused_naming_the_file_and_key(workdir, capsys, yaml_text, key,
                                                                                   shown):
    (workdir / "second.yaml").write_text(yaml_text)
    err = one_line_error(["fit", "--config", str(Path(__file__).parents[2] / "configs" / "debug.yaml"), "--config",
                          "second.yaml"], capsys)
    assert err.startswith(f"error: The config file 'second.yaml' sets {key} to {shown}, which is not a section of "
                          f"settings; give {key} as a mapping of its settings")
    assert not (workdir / ".llm_lit_cache").exists()


@pytest.mark.parametrize("command, name", [("fit", "best"), ("fit", "hpc"), ("validate", "best"), ("predict", "hpc")])
def test_lightnings_special_checkpoint_names_are_refused_in_one_line(workdir, capsys, command, name):
    err = one_line_error([command, "--config", str(Path(__file__).parents[2] / "configs" / "debug.yaml"),
                          "--ckpt_path", name, "--data.prompts", '["a"]'], capsys)
    assert err.startswith(f"error: --ckpt_path {name} is one of Lightning's special names, which means nothing to a "
                          "new llm_lit process")
    assert not (workdir / ".llm_lit_cache").exists()


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_or_test_without_weights_is_refused_instead_of_scoring_an_untrained_model(workdir, capsys, command):
    err = one_line_error([command, "--config", str(Path(__file__).parents[2] / "configs" / "debug.yaml"),
                          "--data.test_files", f'["{BUNDLED_CORPUS}"]'], capsys)
    assert err == (f"error: {command} scores trained weights, and none were given (it would score an untrained model); "
                   "pass --ckpt_path last (the newest last.ckpt of the run) or --ckpt_path FILE, or "
                   "--model.init_from SOURCE to score those weights.")
    assert not (workdir / ".llm_lit_cache").exists()
