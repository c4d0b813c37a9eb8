"""`python -m tokenizer train|encode|decode`: a run end to end, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tok_helpers import REPO, write_text

from tokenizer import Tokenizer, TokenizerError, train_bpe
from tokenizer.__main__ import main
from tokenizer.token_file import read_token_file, write_token_file


def test_train_then_encode(tmp_path, shakespeare_text, capsys):
    corpus = write_text(tmp_path / "c.txt", shakespeare_text[:50_000])
    tok_path, bin_path = tmp_path / "tok.json", tmp_path / "c.bin"
    assert main(["train", "--input", str(corpus), "--vocab-size", "400", "--output", str(tok_path), "--quiet"]) == 0
    assert main(["encode", "--tokenizer", str(tok_path), "--input", str(corpus), "--output", str(bin_path)]) == 0
    tok = Tokenizer.load(tok_path)
    assert tok.vocab_size == 400 and tok.special_tokens == ["<|endoftext|>"]
    ids = read_token_file(bin_path, tok.fingerprint())
    assert tok.decode(ids) == shakespeare_text[:50_000]
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "encode [" in captured.err  # a progress bar on stderr
    text_path = tmp_path / "back.txt"
    assert main(["decode", "--tokenizer", str(tok_path), "--input", str(bin_path), "--output", str(text_path)]) == 0
    assert text_path.read_text(encoding="utf-8") == shakespeare_text[:50_000]
    other = tmp_path / "other.json"
    assert main(["train", "--input", str(corpus), "--vocab-size", "300", "--output", str(other), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["decode", "--tokenizer", str(other), "--input", str(bin_path), "--output", str(text_path)]) == 2
    assert "was made by another tokenizer" in capsys.readouterr().err


def test_errors_are_one_line_with_status_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tokenizer", "train", "--input", str(tmp_path / "nope.txt"), "--vocab-size", "300", "--output", str(tmp_path / "t.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "does not exist; pass the path of a UTF-8 text file" in result.stderr
    assert "Traceback" not in result.stderr


def test_vocab_too_small_and_wrong_tokenizer_file(tmp_path, capsys):
    corpus = write_text(tmp_path / "c.txt", "hello")
    assert main(["train", "--input", str(corpus), "--vocab-size", "100", "--output", str(tmp_path / "t.json")]) == 2
    assert "use a vocab_size of at least 257" in capsys.readouterr().err
    assert main(["encode", "--tokenizer", str(corpus), "--input", str(corpus), "--output", str(tmp_path / "o.bin")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_unwritable_output_fails_before_training(tmp_path, capsys):
    corpus = write_text(tmp_path / "c.txt", "hello")
    blocker = write_text(tmp_path / "blocker", "x")
    assert main(["train", "--input", str(corpus), "--vocab-size", "300", "--output", str(blocker / "t.json"), "--quiet"]) == 2
    assert "choose a path in a writable folder" in capsys.readouterr().err
    assert main(["train", "--input", str(corpus), "--vocab-size", "300", "--output", str(tmp_path), "--quiet"]) == 2
    assert "cannot write output" in capsys.readouterr().err


def test_utf8_errors_replace_trains_and_encodes_a_file_that_is_not_utf8(tmp_path, shakespeare_text, capsys):
    # Invalid bytes at the ends of lines, where chunks and encode blocks are cut, and mid-line.
    data = (shakespeare_text[:20_000].replace("\n", "\xe9\n", 50).encode("utf-8").replace(b"\xc3\xa9", b"\xe9")
            + b"tail \xff\xfe end \xe2\x82\n")
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes(data)
    tok_path, bin_path = tmp_path / "tok.json", tmp_path / "c.bin"
    args = ["--input", str(corpus), "--quiet"]
    assert main(["train", *args, "--vocab-size", "400", "--output", str(tok_path)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text (bad byte 0xe9" in err and "or pass --utf8-errors replace" in err
    assert main(["train", *args, "--vocab-size", "400", "--output", str(tok_path), "--utf8-errors", "replace"]) == 0
    assert main(["encode", *args, "--tokenizer", str(tok_path), "--output", str(bin_path)]) == 2
    assert main(["encode", *args, "--tokenizer", str(tok_path), "--output", str(bin_path), "--utf8-errors", "replace"]) == 0
    tok = Tokenizer.load(tok_path)
    assert tok.decode(read_token_file(bin_path, tok.fingerprint())) == data.decode("utf-8", "replace")
    assert tok.encode(data.decode("utf-8", "replace")) == read_token_file(bin_path).tolist()


def test_utf8_errors_must_be_strict_or_replace(tmp_path, small_tokenizer):
    corpus = write_text(tmp_path / "c.txt", "some text\n")
    with pytest.raises(TokenizerError, match=r"utf8_errors must be 'strict' or 'replace', got 'ignore'; pick one of the two"):
        train_bpe(corpus, 300, utf8_errors="ignore")
    with pytest.raises(TokenizerError, match=r"utf8_errors must be 'strict' or 'replace', got 'ignore'"):
        write_token_file(small_tokenizer, corpus, tmp_path / "o.bin", utf8_errors="ignore")
