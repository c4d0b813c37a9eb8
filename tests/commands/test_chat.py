"""`llm_lit chat`: one loaded model, prompts piped in, settings changed between prompts, stop tokens,
Ctrl-D / Ctrl-C, a checkpoint or a Hugging Face folder, and a one-line message for every bad value."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_lit.commands.chat import ChatError, ChatSession, run_session, stop_ids_of
from llm_lit.run.checkpoint import write_checkpoint
from llm_lit.commands.cli import main
from llm_lit.generation.sampling import SamplingConfig, generate
from llm_lit.interop.export import export_hf
from llm_lit.model import ModelConfig, TransformerLM
from cli_helpers import cli_env
from tokenizer import Tokenizer

CONFIG = dict(vocab_size=258, context_length=32, d_model=32, n_layers=1, n_heads=2)


def byte_tokenizer(special_tokens: list[str], roles: dict[str, str] | None = None,
                   first: list[bytes] = ()) -> Tokenizer:
    """A merge-free byte-level tokenizer; `first` tokens take ids 0.. (special tokens among them keep them)."""
    vocab = {i: t for i, t in enumerate(first)}
    vocab.update({len(first) + b: bytes([b]) for b in range(256)})
    return Tokenizer(vocab, [], special_tokens, roles)


def random_model(seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(ModelConfig(**CONFIG)).eval()


def eos_first_model() -> tuple[TransformerLM, Tokenizer]:
    """A model whose greedy choice is always id 0, which is the special token <eos> (role: eos)."""
    model = random_model()
    with torch.no_grad():
        model.ln_final.weight.zero_()  # every logit 0: argmax picks id 0
    return model, byte_tokenizer(["<|endoftext|>", "<eos>"], {"eos": "<eos>"}, first=[b"<eos>"])


def session(model: TransformerLM, tok: Tokenizer, **sampling) -> ChatSession:
    return ChatSession(model, tok, SamplingConfig(**{"temperature": 0.0, "max_new_tokens": 6, **sampling}),
                       stop_ids_of(tok, None))


def talk(chat: ChatSession, text: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    assert run_session(chat, io.StringIO(text), out, err, interactive=False) == 0
    return out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------- in process
def test_reply_is_what_generate_gives_and_history_and_reset():
    model, tok = random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"])
    chat = session(model, tok)
    expected = tok.decode(generate(model, [tok.encode("ab")], SamplingConfig(temperature=0.0, max_new_tokens=6))[0])
    out, err = talk(chat, "ab\n/reset\nab\n")
    assert out == f"{expected}\n{expected}\n"
    assert "(conversation forgotten)" in err
    chat.history = ""
    talk(chat, "ab\n")
    assert chat.history.startswith("ab") and len(chat.history) > 2  # the prompt and its continuation


def test_settings_change_between_prompts():
    chat = session(random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"]))
    _, err = talk(chat, "/temperature 0.7\n/top_k 5\n/top_p 0.9\n/max_new_tokens 3\n/seed 4\n/settings\n")
    s = chat.sampling
    assert (s.temperature, s.top_k, s.top_p, s.max_new_tokens, s.seed) == (0.7, 5, 0.9, 3, 4)
    assert "(temperature=0.7 top_k=5 top_p=0.9 max_new_tokens=3 seed=4)" in err
    talk(chat, "/top_k none\n/top_p off\n/seed none\n")
    assert (chat.sampling.top_k, chat.sampling.top_p, chat.sampling.seed, chat.generator) == (None, None, None, None)


def test_seeded_sessions_repeat():
    outs = []
    for _ in range(2):
        chat = session(random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"]), temperature=1.0, seed=7)
        outs.append(talk(chat, "x\ny\n")[0])
    assert outs[0] == outs[1]


@pytest.mark.parametrize("line, message", [
    ("/temperature -1", "/temperature -1: temperature must be >= 0 (got -1.0); e.g. /temperature 0.7."),
    ("/temperature hot", "/temperature takes a number >= 0, not 'hot'; e.g. /temperature 0.7."),
    ("/top_k 0", "/top_k 0: top_k must be a positive integer or None (got 0); e.g. /top_k 20."),
    ("/top_k 2.5", "/top_k takes a positive integer or none, not '2.5'; e.g. /top_k 20."),
    ("/top_p 1.5", "/top_p 1.5: top_p must be in (0, 1] or None (got 1.5); e.g. /top_p 0.9."),
    ("/top_p x", "/top_p takes a number in (0, 1] or none, not 'x'; e.g. /top_p 0.9."),
    ("/max_new_tokens -3", "/max_new_tokens -3: max_new_tokens must be a non-negative integer (got -3); "
                           "e.g. /max_new_tokens 200."),
    ("/max_new_tokens", "/max_new_tokens needs a value (a non-negative integer), e.g. /max_new_tokens 200."),
    ("/seed one", "/seed takes an integer or none, not 'one'; e.g. /seed 1."),
    ("/tempreature 1", "unknown command '/tempreature'; type /help for the commands."),
])
def test_bad_command_is_one_line_and_the_session_goes_on(line, message):
    chat = session(random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"]))
    before = chat.sampling
    out, err = talk(chat, f"{line}\nab\n")
    assert err.splitlines() == [f"error: {message}"]
    assert chat.sampling == before and len(out.splitlines()) == 1


def test_eos_role_stops_and_stop_tokens_override():
    model, tok = eos_first_model()
    assert stop_ids_of(tok, None) == [0]
    assert talk(session(model, tok), "hi\n")[0] == "\n"  # <eos> comes first: nothing is printed
    chat = ChatSession(model, tok, SamplingConfig(temperature=0.0, max_new_tokens=2), stop_ids_of(tok, []))
    assert talk(chat, "hi\n")[0] == "<eos><eos>\n"
    with pytest.raises(Exception, match="names '</s>', which is not a special token"):
        stop_ids_of(tok, ["</s>"])


def test_bos_is_prepended_and_context_is_cut():
    tok = byte_tokenizer(["<|endoftext|>", "<s>"], {"bos": "<s>"})
    chat = session(random_model(), tok)
    assert chat.prompt_ids("ab") == [tok.token_to_id("<s>")] + tok.encode("ab")
    assert len(chat.prompt_ids("x" * 100)) == CONFIG["context_length"]
    with pytest.raises(ChatError):
        session(random_model(), byte_tokenizer(["<pad>", "<sep>"])).prompt_ids("")


@pytest.mark.parametrize("args, message", [
    (["--ckpt_path", "missing.ckpt"], "missing.ckpt does not exist"),
    (["--ckpt_path", "CKPT", "--temperature", "-1"], "temperature must be >= 0"),
    (["--ckpt_path", "CKPT", "--top_k", "0"], "top_k must be a positive integer"),
    (["--ckpt_path", "CKPT", "--stop_tokens", '["</s>"]'], "--stop_tokens names '</s>'"),
    (["--ckpt_path", "CKPT", "--device", "cuda:0"], "no CUDA device is available"),
    (["--ckpt_path", "CKPT", "--device", "gpu"], "--device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got 'gpu')"),
    (["--ckpt_path", "CKPT", "--tempreature", "1"], "tempreature"),
])
def test_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    ckpt = tmp_path / "m.ckpt"
    write_checkpoint(random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"]), ckpt)
    args = [str(ckpt) if a == "CKPT" else a for a in args]
    assert main(["chat", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


# ---------------------------------------------------------------------- through the CLI, stdin piped
def chat_process(target: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llm_lit", "chat", "--ckpt_path", str(target), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())


def test_cli_piped_session_on_a_checkpoint(tmp_path):
    model, tok = random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"])
    write_checkpoint(model, tok, tmp_path / "m.ckpt")
    greedy = tok.decode(generate(model, [tok.encode("ROMEO:")], SamplingConfig(temperature=0.0, max_new_tokens=4))[0])
    proc = chat_process(tmp_path / "m.ckpt", "--max_new_tokens", "9", "--seed", "1")
    out, err = proc.communicate("ROMEO:\n/temperature 0\n/max_new_tokens 4\n/reset\nROMEO:\n/top_k x\n", timeout=300)
    assert proc.returncode == 0, err  # the input ends: Ctrl-D
    assert out.endswith(greedy + "\n") and len(out) > len(greedy) + 1  # 9 sampled tokens, then the greedy 4
    assert "error: /top_k takes a positive integer or none, not 'x'; e.g. /top_k 20." in err
    assert "Traceback" not in err


def test_cli_hf_folder_custom_eos_stops(tmp_path):
    model, tok = eos_first_model()
    export_hf(model, tok, tmp_path / "hf")
    proc = chat_process(tmp_path / "hf", "--temperature", "0")
    out, err = proc.communicate("hello\n/quit\nnever read\n", timeout=300)
    assert proc.returncode == 0, err
    assert out == "\n"  # <eos> (the EOS role, read back from the folder) stopped it at once


def test_cli_ctrl_c_at_the_prompt_exits_cleanly(tmp_path):
    write_checkpoint(random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"]), tmp_path / "m.ckpt")
    proc = chat_process(tmp_path / "m.ckpt")
    banner = proc.stderr.readline()  # printed once the model is loaded and the prompt loop starts
    assert banner.startswith("chat: ")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err


def test_an_imported_folder_and_a_hugging_face_folder_load_the_same_model(tmp_path):
    from llm_lit.commands.chat import load_for_chat
    from llm_lit.commands.import_hf import import_hf

    model, tok = random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"])
    export_hf(model, tok, tmp_path / "hf")
    import_hf(tmp_path / "hf", tmp_path / "imported")
    for source in (tmp_path / "hf", tmp_path / "imported"):
        loaded, loaded_tok = load_for_chat(str(source), "cpu")
        assert loaded_tok.encode("hi there") == tok.encode("hi there")
        x = torch.tensor([tok.encode("hello")])
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_cli_ckpt_path_last_echo_and_delimiter(tmp_path):
    model, tok = random_model(), byte_tokenizer(["<|endoftext|>", "<pad>"])
    older, newer = (tmp_path / "runs" / name / "version_0" / "checkpoints" / "last.ckpt" for name in ("a", "b"))
    write_checkpoint(random_model(seed=1), tok, older)
    write_checkpoint(model, tok, newer)
    os.utime(older, (1, 1))  # the newest last.ckpt under runs/ is b's
    greedy = [tok.decode(generate(model, [tok.encode(p)], SamplingConfig(temperature=0.0, max_new_tokens=4))[0])
              for p in ("ab", "cd")]
    proc = subprocess.Popen([sys.executable, "-m", "llm_lit", "chat", "--ckpt_path", "last", "--temperature", "0",
                             "--max_new_tokens", "4", "--echo", "true", "--delimiter", "<|end|>"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env())
    out, err = proc.communicate("ab\n/reset\ncd\n", timeout=300)
    assert proc.returncode == 0, err
    assert err.startswith(f"chat: {Path('runs/b/version_0/checkpoints/last.ckpt')} (")
    assert out == f"> ab\n{greedy[0]}\n<|end|>\n> cd\n{greedy[1]}\n<|end|>\n"


def test_ckpt_path_last_without_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["chat", "--ckpt_path", "last"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --ckpt_path last: no run under 'runs' has a last.ckpt; train "
                                               "one with llm_lit fit, or pass --ckpt_path FILE.")
