"""The tokenizer's one user-facing exception type."""

from __future__ import annotations


class TokenizerError(ValueError):
    """A problem with the tokenizer's input (corpus, vocabulary, files), stated in one sentence.

    The message names the problem and how to fix it; the CLI prints it as a single line.
    """
