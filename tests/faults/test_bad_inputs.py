"""Every bad input of issue 5 gets one clear sentence on stderr, a non-zero exit, no traceback, and
leaves no partial file behind."""

from __future__ import annotations

from pathlib import Path

import lightning
import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, one_line_error
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.training.module import LanguageModel
from tokenizer import Tokenizer, train_bpe


def fit_args(*extra: str, checkpoints: bool = False, logger: bool = False) -> list[str]:
    """A 2-step fit of debug.yaml on the small corpus; checkpoint callbacks and logger off unless asked."""
    args = ["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", '["small.txt"]', "--data.vocab_size", "270",
            "--trainer.max_steps", "2", "--model.optimizer.warmup_steps", "1", "--trainer.enable_progress_bar", "false"]
    if not logger:
        args += ["--trainer.logger", "false"]
    if not checkpoints:
        args += ["--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false"]
    return [*args, *extra]


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.tmp")] and not list(root.rglob("corpus.txt"))


def test_missing_corpus(workdir, capsys):
    err = one_line_error(fit_args("--data.train_files", '["nope.txt"]'), capsys)
    assert "nope.txt' does not exist" in err


def test_a_folder_given_as_the_corpus_is_named_as_a_folder(workdir, capsys):
    (workdir / "books").mkdir()
    (workdir / "books" / "a.txt").write_text("To be, or not to be.\n")
    err = one_line_error(fit_args("--data.train_files", '["books"]'), capsys)
    assert "The training corpus file 'books' is a folder; list the text files in it instead" in err
    assert "--data.train_files '[books/a.txt]'" in err


def test_empty_corpus(workdir, capsys):
    (workdir / "empty.txt").write_text("")
    err = one_line_error(fit_args("--data.train_files", '["empty.txt"]'), capsys)
    assert "is empty" in err


def test_corpus_shorter_than_one_window(workdir, capsys):
    (workdir / "tiny.txt").write_text("To be, or not to be: that is the question.\n")
    err = one_line_error(fit_args("--data.train_files", '["tiny.txt"]'), capsys)
    assert "fewer than one window of 33" in err and "context_length" in err
    assert no_temp_files(workdir)


def test_non_utf8_corpus_names_the_byte_offset_and_the_flag(workdir, capsys):
    data = BUNDLED_CORPUS.read_bytes()[:40_000]
    (workdir / "latin1.txt").write_bytes(data[:12_345] + "é".encode("latin-1") + data[12_345:])
    err = one_line_error(fit_args("--data.train_files", '["latin1.txt"]'), capsys)
    assert "latin1.txt' is not UTF-8" in err and "byte offset 12345" in err and "0xe9" in err
    line = data[:12_345].count(b"\n") + 1
    assert f"line {line}" in err
    assert "--data.utf8_errors replace" in err
    assert no_temp_files(workdir)


def test_non_utf8_corpus_with_replace_trains(workdir, capsys):
    data = BUNDLED_CORPUS.read_bytes()[:40_000]
    (workdir / "latin1.txt").write_bytes(data[:100] + b"\xe9\xff" + data[100:])
    assert main(fit_args("--data.train_files", '["latin1.txt"]', "--data.utf8_errors", "replace",
                         "--trainer.limit_val_batches", "1")) == 0


def test_vocab_size_beyond_what_the_corpus_yields_is_refused_naming_the_size_it_has(workdir, capsys):
    # 10 KB of text cannot give 100,000 tokens: the model would carry rows no token uses
    (workdir / "short.txt").write_bytes(BUNDLED_CORPUS.read_bytes()[:10_000])
    err = one_line_error(fit_args("--data.train_files", '["short.txt"]', "--data.vocab_size", "100000"), capsys)
    have = int(err.split("has only ")[1].split(" tokens")[0].replace(",", ""))
    assert 256 < have < 10_000
    assert "fewer than --data.vocab_size 100000" in err and f"pass --data.vocab_size {have} or less" in err


def test_gpt2_small_on_the_bundled_corpus_is_refused_before_any_tokenizer_is_trained(workdir, capsys):
    # its 50,304-token vocabulary is more than tinyshakespeare yields; said before the data step, nothing built
    on_cpu = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
              "--model.compile", "false", "--model.config.n_layers", "1", "--model.config.d_model", "48"]  # (fast)
    config = Path(__file__).resolve().parents[2] / "configs" / "gpt2-small.yaml"
    err = one_line_error(["fit", "--config", str(config), *on_cpu], capsys)
    assert "data.vocab_size 50304 is more than the bundled tinyshakespeare corpus can give" in err
    assert "pass --data.vocab_size 21533 or less" in err
    assert not (workdir / ".llm_lit_cache").exists() or not any((workdir / ".llm_lit_cache").iterdir())


def test_tokenizer_vocab_larger_than_the_model(tmp_path):
    (tmp_path / "c.txt").write_text(BUNDLED_CORPUS.read_text()[:20_000])
    vocab, merges = train_bpe(tmp_path / "c.txt", 300, special_tokens=["<|endoftext|>"])
    lm = LanguageModel(ModelConfig(vocab_size=280, context_length=16, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(Exception, match=r"tokenizer has 300 tokens but the model's vocab_size is 280; set "
                                        r"model.config.vocab_size >= 300"):
        lm.set_tokenizer(Tokenizer(vocab, merges, ["<|endoftext|>"]))


def _fake_checkpoint(path: Path, config: ModelConfig) -> None:
    model = TransformerLM(config)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": 0,
                "pytorch-lightning_version": lightning.__version__, "llm_lit": {"version": 1, "model_config": config.to_dict(), "tokenizer": None}}, path)


def test_checkpoint_from_another_architecture(workdir, capsys):
    _fake_checkpoint(workdir / "other.ckpt", ModelConfig(vocab_size=270, context_length=32, d_model=48, n_layers=2,
                                                         n_heads=2))
    err = one_line_error(fit_args("--ckpt_path", "other.ckpt"), capsys)
    assert "another architecture (d_model 48 in the checkpoint vs 32)" in err


def _edited_checkpoint(path: Path, name: str, tensor: torch.Tensor, tokenizer: bool = False) -> None:
    """A checkpoint of the debug architecture at `path` whose weight `name` was replaced by `tensor`."""
    _fake_checkpoint(path, ModelConfig(vocab_size=270, context_length=32, d_model=32, n_layers=2, n_heads=2))
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"][name] = tensor
    if tokenizer:
        ckpt["llm_lit"]["tokenizer"] = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).to_dict()
    torch.save(ckpt, path)


def test_checkpoint_with_weights_that_do_not_fit_its_config(workdir, capsys):
    _edited_checkpoint(workdir / "edited.ckpt", "model.ln_final.weight", torch.ones(7))
    err = one_line_error(fit_args("--ckpt_path", "edited.ckpt"), capsys)
    assert "'model.ln_final.weight' is (7,) in the checkpoint but (32,) in the model" in err


def test_export_of_weights_that_do_not_fit_their_config_names_the_tensor(workdir, capsys):
    _edited_checkpoint(workdir / "edited.ckpt", "model.layers.1.ffn.w2.weight", torch.ones(32, 7), tokenizer=True)
    err = one_line_error(["export", "--ckpt_path", "edited.ckpt", "--output", "hf"], capsys)
    assert "'layers.1.ffn.w2.weight' is (32, 7) in the checkpoint but" in err
    assert not (workdir / "hf").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", None], ids=["empty", "garbage", "truncated"])
def test_truncated_or_corrupt_last_checkpoint(workdir, capsys, content):
    last = workdir / DEBUG_CKPTS / "last.ckpt"
    last.parent.mkdir(parents=True)
    if content is None:  # a real checkpoint cut in half
        _fake_checkpoint(last, ModelConfig(vocab_size=270, context_length=32, d_model=32, n_layers=2, n_heads=2))
        content = last.read_bytes()[: last.stat().st_size // 2]
    last.write_bytes(content)
    err = one_line_error(fit_args("--ckpt_path", "last", "--run_name", "debug", checkpoints=True), capsys)
    assert "last.ckpt' is truncated or corrupt" in err


class _TouchesAFile:
    """Unpickling this calls Path.touch: what a malicious checkpoint would do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("command", ["predict", "resume"])
def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_runs_nothing(workdir, capsys, command):
    # the README's 'what is trusted': checkpoints are loaded with weights_only=True, so no code in them runs
    ckpt = workdir / "evil.ckpt"
    _fake_checkpoint(ckpt, ModelConfig(vocab_size=270, context_length=32, d_model=32, n_layers=2, n_heads=2))
    checkpoint = torch.load(ckpt, weights_only=True)
    torch.save({**checkpoint, "payload": _TouchesAFile(workdir / "ran")}, ckpt)
    argv = (["predict", "--ckpt_path", str(ckpt), "--data.prompts", '["ROMEO:"]'] if command == "predict"
            else fit_args("--ckpt_path", str(ckpt)))
    err = one_line_error(argv, capsys)
    assert "holds objects other than tensors and plain data, which are not loaded for safety" in err
    assert not (workdir / "ran").exists()


def test_prompt_longer_than_the_context(workdir, capsys):
    err = one_line_error(fit_args("--model.sample_prompts", '["' + "ROMEO: " * 40 + '"]'), capsys)
    assert "tokens long, more than the model's context of 32 tokens" in err
    assert "--model.truncate_prompts true" in err


def test_unwritable_checkpoint_folder(workdir, capsys):
    (workdir / "a_file").write_text("not a folder")
    err = one_line_error(fit_args("--trainer.callbacks", "[]", "--trainer.callbacks+=ModelCheckpoint",
                                  "--trainer.callbacks.dirpath", "a_file/ckpts", checkpoints=True), capsys)
    assert "a_file/ckpts' cannot be written (Not a directory)" in err


def test_unwritable_log_folder(workdir, capsys):
    (workdir / "a_file").write_text("not a folder")
    err = one_line_error(fit_args("--out_dir", "a_file/runs", logger=True), capsys)
    assert "log folder 'a_file/runs' cannot be written" in err and "--out_dir" in err


def test_more_gpus_than_exist(workdir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    err = one_line_error(fit_args("--trainer.accelerator", "gpu", "--trainer.devices", "4"), capsys)
    assert "asks for 4 GPUs but this machine has 1" in err


def test_gpu_accelerator_without_gpus(workdir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    err = one_line_error(fit_args("--trainer.accelerator", "gpu", "--trainer.devices", "2"), capsys)
    assert "has no usable GPU" in err


def test_unknown_config_key_and_invalid_model_config(workdir, capsys):
    err = one_line_error(fit_args("--model.skip_nonfinte", "true"), capsys)
    assert "did you mean 'model.skip_nonfinite'?" in err
    err = one_line_error(fit_args("--model.config.n_heads", "5"), capsys)
    assert "divisible" in err


@pytest.mark.parametrize("flag, nearest", [("--model.config.n_la", "model.config.n_layers"),
                                           ("--trainer.max_st", "trainer.max_steps")])
def test_an_abbreviated_key_is_refused_naming_the_full_key(workdir, capsys, flag, nearest):
    err = one_line_error(fit_args(flag, "5"), capsys)  # argparse would take the prefix for the full key
    assert f"Unknown config key '{flag[2:]}'; did you mean '{nearest}'?" in err


def test_an_abbreviated_key_of_an_extra_command_is_refused(capsys):
    err = one_line_error(["export", "--ckpt_pa", "x.ckpt", "--output", "out"], capsys)
    assert "Unknown config key 'ckpt_pa'; did you mean 'ckpt_path'?" in err


SHAKESPEARE = DEBUG_CONFIG.parent / "shakespeare.yaml"


@pytest.mark.parametrize("argv, words", [
    (["--config", str(SHAKESPEARE), "--model.optimizer.wsd.decay_fraction", "2"],
     "optimizer settings: wsd.decay_fraction must be in [0, 1]"),
    (["--config", str(DEBUG_CONFIG), "--model.optimizer.min_lr", "-1"], "optimizer settings: min_lr must be in [0, lr]"),
    (["--config", str(DEBUG_CONFIG), "--model.optimizer.betas", "[0.9, 1.5]"],
     "optimizer settings: betas must be two numbers in [0, 1)"),
    (["--config", str(DEBUG_CONFIG), "--trainer.gradient_clip_val", "1"], "remove --trainer.gradient_clip_val"),
], ids=["decay_fraction", "min_lr", "betas", "gradient_clip_val"])
def test_settings_are_checked_before_any_tokenizer_training_or_encoding(workdir, capsys, argv, words):
    err = one_line_error(["fit", *argv, "--data.cache_dir", "cache"], capsys)
    assert words in err
    assert not (workdir / "cache").exists()  # refused before the data step: no tokenizer trained, nothing encoded


def test_traceback_only_with_llm_lit_debug(workdir, capsys, monkeypatch):
    monkeypatch.setenv("LLM_LIT_DEBUG", "1")
    assert main(fit_args("--data.train_files", '["nope.txt"]')) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_truncate_prompts_keeps_the_last_context_tokens_with_a_warning():
    from llm_lit.generation.sampling import SamplingConfig

    tokenizer = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    config = ModelConfig(vocab_size=257, context_length=8, d_model=16, n_layers=1, n_heads=2)
    refusing = LanguageModel(config, sample_prompts=[], sampling=SamplingConfig(max_new_tokens=2, temperature=0))
    refusing.set_tokenizer(tokenizer)
    with pytest.raises(Exception, match=r"is 12 tokens long, more than the model's context of 8 tokens"):
        refusing.continue_texts(["abcdefghijkl"])
    truncating = LanguageModel(config, sample_prompts=[], truncate_prompts=True,
                               sampling=SamplingConfig(max_new_tokens=2, temperature=0))
    truncating.load_state_dict(refusing.state_dict())
    truncating.set_tokenizer(tokenizer)
    with pytest.warns(UserWarning):
        long = truncating.continue_texts(["abcdefghijkl"])
    short = truncating.continue_texts(["efghijkl"])
    assert long[0]["completion"] == short[0]["completion"]  # only the last 8 tokens count
