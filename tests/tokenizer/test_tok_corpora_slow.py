"""Slow checks on the public corpora of docs/results.md, in the folder LLM_LIT_CORPORA names (run with `-m slow`)."""

from __future__ import annotations

import pytest
from tok_helpers import EOT, SHARED_DATA

from tokenizer import Tokenizer, train_bpe
from tokenizer.pretokenize import chunk_boundaries

CORPORA = sorted(SHARED_DATA.glob("*.txt")) if SHARED_DATA.is_dir() else []
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CORPORA, reason="the public corpora are not here: set LLM_LIT_CORPORA to their folder (docs/results.md)")]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Ours trained on enwiki_valid (vocab 5,000) and HF tokenizers loaded from its save_hf file."""
    hf_tokenizers = pytest.importorskip("tokenizers")
    vocab, merges = train_bpe(SHARED_DATA / "enwiki_valid.txt", 5000, [EOT])
    ours = Tokenizer(vocab, merges, [EOT])
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    ours.save_hf(path)
    return ours, hf_tokenizers.Tokenizer.from_file(str(path))


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_same_ids_as_hf_on_whole_corpus(tokenizers, path):
    ours, hf = tokenizers
    bounds = chunk_boundaries(path, 4 << 20, [EOT])  # exact cuts: block ids concatenate to whole-file ids
    with open(path, "rb") as f:
        for a, b in zip(bounds, bounds[1:]):
            f.seek(a)
            text = f.read(b - a).decode("utf-8")
            assert ours.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_training_is_deterministic_across_processes_on_enwiki():
    path = SHARED_DATA / "enwiki_valid.txt"
    assert train_bpe(path, 3000, [EOT], num_processes=1) == train_bpe(path, 3000, [EOT], num_processes=2)
