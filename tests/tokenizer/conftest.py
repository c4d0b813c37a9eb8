"""Fixtures for the tokenizer tests: the bundled Shakespeare and a small tokenizer trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tok_helpers import EOT, SHAKESPEARE

from tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    return SHAKESPEARE


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_tokenizer() -> Tokenizer:
    """A tokenizer with 1,000 ids trained on the bundled Shakespeare, with <|endoftext|>."""
    vocab, merges = train_bpe(SHAKESPEARE, 1000, [EOT])
    return Tokenizer(vocab, merges, [EOT])
