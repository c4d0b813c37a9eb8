"""Token ids to text as they come, with stop strings: what a streaming client may be shown so far.

    text = TextStream(tokenizer.vocab, stop=["\\nUser:"])
    for token in tokens:
        shown, stopped = text.push(token)     # text safe to show now; True once a stop string appeared
        if stopped:
            break
    shown = text.finish()                     # the rest, when generation ended without a stop string

Bytes are decoded incrementally as UTF-8 (a character split across tokens appears once whole;
invalid bytes become U+FFFD, as `Tokenizer.decode` does). Text that might be the start of a stop
string is held back until it is known not to be one, so a client never sees any part of a stop
string, and the text before one equals the whole text cut at its first stop string.
"""

from __future__ import annotations

import codecs
from typing import Mapping, Sequence

REPLACEMENT = "\N{REPLACEMENT CHARACTER}".encode()


class TextStream:
    """Incremental detokenizer of one continuation, cut at the first of `stop` (strings).

    Args:
        vocab: id -> bytes of the tokenizer (an id beyond it decodes as U+FFFD).
        stop: Strings that end the text (left out of it); empty strings are ignored.
    """

    def __init__(self, vocab: Mapping[int, bytes], stop: Sequence[str] = ()) -> None:
        self.vocab = vocab
        self.stop = [s for s in stop if s]
        self._hold = max((len(s) for s in self.stop), default=1) - 1
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.text = ""  # everything shown so far
        self.stopped = False

    def token_text(self, token: int) -> str:
        """The text of `token` alone (its bytes decoded with replacement), e.g. for log-probabilities."""
        return self.vocab.get(token, REPLACEMENT).decode("utf-8", errors="replace")

    def push(self, token: int) -> tuple[str, bool]:
        """Add `token`; returns the new text that may be shown and whether a stop string has appeared."""
        if self.stopped:
            return "", True
        self._pending += self._decoder.decode(self.vocab.get(token, REPLACEMENT))
        return self._release(final=False), self.stopped

    def finish(self) -> str:
        """The text held back (and any incomplete character, as U+FFFD) once generation has ended."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        cut = min((i for i in (self._pending.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            shown, self._pending, self.stopped = self._pending[:cut], "", True
        elif final:
            shown, self._pending = self._pending, ""
        else:
            keep = min(self._hold, len(self._pending))
            shown, self._pending = self._pending[:len(self._pending) - keep], self._pending[len(self._pending) - keep:]
        self.text += shown
        return shown
