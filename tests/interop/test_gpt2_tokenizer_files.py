"""GPT-2's tokenizer files (vocab.json + merges.txt) give the ids GPT-2's own tokenizers give.

GPT-2's released vocabulary cannot be downloaded here, so the files are written in GPT-2's
exact format *and id order* from a tokenizer trained on the bundled corpus: ids 0..255 are
the bytes in GPT-2's table order (printable bytes first, so byte ids differ from byte
values), then the merges, then <|endoftext|> last. Two independent implementations of
GPT-2's algorithm read the same files: tiktoken, through the very function that builds its
"gpt2" encoding from GPT-2's released files (`data_gym_to_mergeable_bpe_ranks`), and
`transformers.GPT2Tokenizer` (in transformers 5 the pure-Python GPT-2 tokenizer is gone and
this class, like `GPT2TokenizerFast`, runs on the `tokenizers` library).
"""

from __future__ import annotations

import json

import pytest
from interop_helpers import EOT

from llm_lit.interop import load_hf_tokenizer
from tokenizer import Tokenizer
from tokenizer.formats import bytes_to_unicode, token_to_text

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TRICKY = ("Hello  world!\n\n It's 12 o'clock<|endoftext|>日本語 😀👍🏽 e\u0301 \t end \r\n  x   \n"
          "they'll I'VE we're don't 3.14159 $100,000 ____ ---> ¿Qué? naïve café\u00a0nbsp \x00\x1f ")


def _gpt2_order_files(tok: Tokenizer, folder) -> None:  # noqa: ANN001
    """vocab.json + merges.txt in GPT-2's id order (bytes by GPT-2's table order, merges, <|endoftext|> last)."""
    byte_order = list(bytes_to_unicode())  # printable bytes first, as in GPT-2's vocab
    tokens = [bytes([b]) for b in byte_order] + [a + b for a, b in tok.merges]
    vocab = {token_to_text(t): i for i, t in enumerate(tokens)}
    vocab[EOT] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "".join(f"{token_to_text(a)} {token_to_text(b)}\n" for a, b in tok.merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2_files(tok, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2_tokenizer")
    _gpt2_order_files(tok, folder)
    return folder


def test_byte_ids_are_not_byte_values(gpt2_files):
    ours = Tokenizer.from_gpt2_files(gpt2_files / "vocab.json", gpt2_files / "merges.txt", [EOT])
    assert ours.encode("!") == [0] and ours.encode(" ") != [32]
    assert ours.token_to_id(EOT) == ours.vocab_size - 1


def test_same_ids_as_transformers_gpt2_tokenizer_on_the_corpus(gpt2_files, corpus_text):
    ours = Tokenizer.from_gpt2_files(gpt2_files / "vocab.json", gpt2_files / "merges.txt", [EOT])
    theirs = transformers.GPT2Tokenizer(str(gpt2_files / "vocab.json"), str(gpt2_files / "merges.txt"))
    assert len(theirs) == ours.vocab_size
    for text in (corpus_text, TRICKY, EOT + TRICKY + EOT):
        ids = ours.encode(text)
        assert ids == theirs(text)["input_ids"]
        assert ours.decode(ids) == theirs.decode(ids) == text


def test_same_ids_as_tiktoken_reading_the_gpt2_files(gpt2_files, corpus_text, monkeypatch):
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # read the local files, cache nothing
    ranks = data_gym_to_mergeable_bpe_ranks(str(gpt2_files / "merges.txt"), str(gpt2_files / "vocab.json"))
    theirs = tiktoken.Encoding("gpt2-format-test", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                               special_tokens={EOT: len(ranks)})
    ours = Tokenizer.from_gpt2_files(gpt2_files / "vocab.json", gpt2_files / "merges.txt", [EOT])
    for text in (corpus_text, TRICKY, EOT + TRICKY + EOT):
        assert ours.encode(text) == theirs.encode(text, allowed_special="all")


def test_folder_with_gpt2_files_imports_the_same_tokenizer(gpt2_files, corpus_text):
    ours = load_hf_tokenizer(gpt2_files)  # no special_tokens_map: <|endoftext|> is found in vocab.json
    reference = Tokenizer.from_gpt2_files(gpt2_files / "vocab.json", gpt2_files / "merges.txt", [EOT])
    assert ours.fingerprint() == reference.fingerprint()
    assert ours.special_tokens == [EOT]


def test_tokenizer_json_written_by_transformers_imports_with_the_same_ids(gpt2_files, corpus_text, tmp_path):
    from llm_lit.interop import tokenizer_from_hf_json

    theirs = transformers.GPT2Tokenizer(str(gpt2_files / "vocab.json"), str(gpt2_files / "merges.txt"))
    theirs.save_pretrained(tmp_path)
    ours = tokenizer_from_hf_json(tmp_path / "tokenizer.json")
    assert ours.special_tokens == [EOT]
    text = corpus_text[:200_000] + TRICKY + EOT
    assert ours.encode(text) == theirs(text)["input_ids"]
