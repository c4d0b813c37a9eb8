"""`data.tokenizer_kind char` through the data pipeline and the CLI: the token cache round-trips the corpus, the
checkpoint carries the char tokenizer (predict and validate use it), a character outside the alphabet is one
line unless `data.unk_token` is set, Hugging Face export is refused with the reason; every bad value in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from llm_lit.commands.cli import main
from llm_lit.data import TextDataModule
from llm_lit.data.tokens import BUNDLED_CORPUS

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, DEBUG_RUN, finished_run, run_cli, scalars

ARGS = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "10",
        "--model.optimizer.warmup_steps", "2", "--torch_threads", "1", "--data.tokenizer_kind", "char"]
LAST = DEBUG_CKPTS / "last.ckpt"


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, cache) -> Path:
    """The folder of a 10-step char-level fit of the bundled corpus."""
    return finished_run([*ARGS, "--data.cache_dir", str(cache)], tmp_path_factory.mktemp("char"))


def test_the_token_cache_of_a_char_tokenizer_decodes_back_to_the_corpus(tmp_path):
    data = TextDataModule(tokenizer_kind="char", cache_dir=str(tmp_path), context_length=32, num_proc=1)
    assert data.vocab_size == 66  # nanoGPT's 65 characters, then <|endoftext|>
    data.prepare_data()
    data.setup("fit")
    tokens = [int(t) for t in data.train_tokens[0:len(data.train_tokens)]] + \
             [int(t) for t in data.val_tokens[0:len(data.val_tokens)]]
    assert data.tokenizer.decode(tokens) == BUNDLED_CORPUS.read_text(encoding="utf-8")


def test_fit_saves_the_char_tokenizer_and_predict_uses_it(char_run, tmp_path):
    checkpoint = torch.load(char_run / LAST, map_location="cpu", weights_only=True)
    assert checkpoint["llm_lit"]["tokenizer"]["kind"] == "char"
    assert checkpoint["llm_lit"]["model_config"]["vocab_size"] == 66
    saved = yaml.safe_load((char_run / DEBUG_RUN / "config.yaml").read_text())
    assert saved["data"]["vocab_size"] == 66  # what the model has, not the 300 debug.yaml asks for
    assert scalars(char_run / "runs", "val/bpb")
    out = tmp_path / "p.jsonl"
    result = run_cli(["predict", "--ckpt_path", str(char_run / LAST), "--data.prompts", '["ROMEO:"]',
                      "--data.predictions_path", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text().splitlines()[0])
    assert row["num_tokens"] == len(row["completion"])  # one token per character


def test_a_prompt_outside_the_alphabet_is_one_line(char_run, tmp_path):
    result = run_cli(["predict", "--ckpt_path", str(char_run / LAST), "--data.prompts", '["ROMEO: 日本"]'], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the character '日' (U+65E5) at position 7 is not in this char tokenizer's alphabet of 65 characters; "
        "encode text of the corpus it was built from, or give it an unk_token (--data.unk_token) that unknown "
        "characters become.")


@pytest.mark.slow
def test_with_an_unk_token_unknown_characters_become_it(cache, tmp_path):
    result = run_cli([*ARGS, "--data.cache_dir", str(cache), "--trainer.max_steps", "3", "--data.unk_token", "<|unk|>"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / LAST, map_location="cpu", weights_only=True)
    assert checkpoint["llm_lit"]["model_config"]["vocab_size"] == 67
    result = run_cli(["predict", "--ckpt_path", str(tmp_path / LAST), "--data.prompts", '["ROMEO: 日本"]'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_hugging_face_export_is_refused_with_the_reason(char_run, tmp_path):
    result = run_cli(["export", "--ckpt_path", str(char_run / LAST), "--output", str(tmp_path / "hf")], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: The model's tokenizer is CharTokenizer (character-level), which has no counterpart in Hugging Face's")
    assert not (tmp_path / "hf").exists()


@pytest.mark.slow
def test_validate_and_resume_take_the_char_tokenizer_from_the_checkpoint(char_run, cache, tmp_path):
    result = run_cli(["validate", "--ckpt_path", str(char_run / LAST), "--data.cache_dir", str(cache)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/bpb" in result.stdout


# ---------------------------------------------------------------------- bad values, in-process
@pytest.mark.parametrize("extra, message", [
    (["--data.tokenizer_kind", "word"], "error: Invalid value for data.tokenizer_kind"),
    (["--data.tokenizer_kind", "char", "--data.unk_token", ""],
     "error: Invalid data settings: unk_token must be a non-empty string such as '<|unk|>'; fix these --data values."),
    (["--data.tokenizer_kind", "char", "--data.train_files", "[x.bin]"],
     "error: Invalid data settings: tokenizer_kind char builds its alphabet from text, but 'x.bin' is a token file "
     "(pass the tokenizer that wrote it with tokenizer_path); fix these --data values."),
    (["--data.tokenizer_kind", "char", "--data.train_files", "[missing.txt]"],
     "error: The corpus file 'missing.txt' does not exist; fix --data.train_files or --data.val_files."),
    (["--data.tokenizer_kind", "char", "--data.tokenizer_path", "{bpe}"],
     "error: data.tokenizer_kind is 'char' but data.tokenizer_path '{bpe}' holds a byte-level BPE tokenizer; pass a "
     "char tokenizer file or drop one of the two settings."),
])
def test_bad_char_settings_are_one_line(capsys, tmp_path, monkeypatch, extra, message):
    from tokenizer import Tokenizer

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save(tmp_path / "bpe.json")
    extra = [e.format(bpe=tmp_path / "bpe.json") for e in extra]
    assert main(["fit", "--config", str(DEBUG_CONFIG), "--trainer.logger", "false", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(message.format(bpe=tmp_path / "bpe.json")), err
