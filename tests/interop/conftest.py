"""Fixtures for the interop tests: the bundled corpus and a tokenizer trained on it."""

from __future__ import annotations

import pytest
from interop_helpers import CORPUS, EOT, VOCAB

from tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return CORPUS.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    """400 ids trained on the bundled Shakespeare, with <|endoftext|>."""
    vocab, merges = train_bpe(CORPUS, VOCAB, [EOT])
    return Tokenizer(vocab, merges, [EOT])
