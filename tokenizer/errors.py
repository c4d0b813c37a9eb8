"""The tokenizer's one user-facing exception type."""

from __future__ import annotations


class TokenizerError(ValueError):
    """A problem with the tokenizer's input (corpus, vocabulary, files), stated in one sentence.

    The message names the problem and how to fix it; the CLI prints it as a single line.
    """


class NotUTF8Error(TokenizerError):
    """A text file that is not UTF-8, with where: `path`, byte `offset`, the `byte` itself and its `line`."""

    def __init__(self, message: str, path: str, offset: int, byte: int, line: int):
        super().__init__(message)
        self.path, self.offset, self.byte, self.line = path, offset, byte, line

    def __reduce__(self):  # pickles across worker processes with its fields
        return type(self), (str(self), self.path, self.offset, self.byte, self.line)


class WriteError(TokenizerError):
    """A file that could not be written: `path` and the operating system's `reason` (e.g. no space left)."""

    def __init__(self, message: str, path: str, reason: str):
        super().__init__(message)
        self.path, self.reason = path, reason

    def __reduce__(self):
        return type(self), (str(self), self.path, self.reason)
