"""Pre-tokenization: split text into the pieces BPE works inside, and count them in parallel.

Text is first cut at special tokens (matched longest-first, so that when both
`<|endoftext|>` and `<|endoftext|><|endoftext|>` are special the longer one wins), then
each piece between special tokens is split by the GPT-2 regex. Merges never cross a
pre-token, so BPE training only needs how often each *distinct* pre-token occurs.

Big files are read in chunks. A chunk boundary must not change the pre-tokens, so it is
put only where the whole-text split also has a boundary:

* at the start of a special token that no other special-token occurrence overlaps, or
* just before a line break (`\n` or `\r\n`) whose preceding byte is printable non-space
  ASCII. The regex
  pieces around such a point are a non-space piece ending there and a whitespace piece
  starting there, whatever comes before or after, so cutting there is exact.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from typing import Iterator, NamedTuple, Sequence

import regex

from .errors import NotUTF8Error, TokenizerError
from .progress import Progress
from .workers import available_cores, check_num_processes, ordered_map

#: The GPT-2 pre-tokenization pattern: contractions, letters, digits, other symbols (each
#: optionally after one space), then whitespace runs (a run before a non-space keeps its
#: last character for the next piece).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)

# The same pattern for text that is all ASCII, where \p{L} is [A-Za-z], \p{N} is [0-9] and
# the `regex` module's \s is [\t\n\v\f\r ] (stdlib `re`'s \s would add \x1c-\x1f). Letters
# come first because they are the commonest match (no other alternative starts with a space
# or a letter, so the order changes nothing else). The stdlib engine runs it about 2x faster
# than `regex` runs the Unicode pattern.
_WS = r"\t\n\v\f\r "
ASCII_PRETOKEN_RE = re.compile(
    rf""" ?[A-Za-z]+|'(?:[sdmt]|ll|ve|re)| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+"""
)


# The Unicode blocks where text's punctuation and symbols mostly come from: Latin-1, spacing
# modifiers, general punctuation to miscellaneous symbols and arrows, CJK punctuation, and the
# small, half- and full-width forms. (Scanning 12k code points instead of 64k keeps import fast.)
_SYMBOL_BLOCKS = ((0x00A0, 0x0100), (0x02C2, 0x0300), (0x2000, 0x2C00), (0x3000, 0x3040), (0xFE10, 0xFE70),
                  (0xFF00, 0xFF66))


def _plain_symbols() -> str:
    """Non-ASCII punctuation and symbols (Unicode categories P* and S*) that both engines see as
    non-space, non-letter, non-digit characters: curly quotes, dashes, ellipses, currency
    signs... In text made of ASCII and these, the ASCII pattern (whose "other" class is
    everything but ASCII letters, digits and whitespace) splits exactly as the Unicode one
    does, so they need not leave the fast path. (Any character left out merely takes the
    Unicode path, which is exact too.)"""
    chars = []
    for lo, hi in _SYMBOL_BLOCKS:
        for code in range(lo, hi):
            c = chr(code)
            if unicodedata.category(c)[0] in "PS" and not c.isspace() and re.match(r"\s", c) is None \
                    and regex.match(r"[^\s\p{L}\p{N}]", c) is not None:
                chars.append(c)
    return "".join(chars)


_PLAIN_SYMBOLS = frozenset(_plain_symbols())
_NON_ASCII_RUN = regex.compile(r"[^\x00-\x7f]+")  # `regex` scans for it 9x faster than `re`
# An ASCII whitespace character after a non-space one: no pre-token spans it (see `pretokens`).
# Stdlib \S is slightly narrower than `regex`'s, so every match here is a cut for both.
_CUT_AFTER = re.compile(rf"(?<=\S)[{_WS}]")

_MIB = 1 << 20


def special_token_regex(special_tokens: Sequence[str]) -> "regex.Pattern | None":
    """A regex matching any special token, longest first (None when there are none)."""
    if not special_tokens:
        return None
    ordered = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    return regex.compile("|".join(regex.escape(s) for s in ordered))


def split_special(text: str, special_re: "regex.Pattern | None") -> Iterator[tuple[str, bool]]:
    """Yield `(piece, is_special)` in order; ordinary pieces are never empty."""
    if special_re is None:
        if text:
            yield text, False
        return
    pos = 0
    for match in special_re.finditer(text):
        if match.start() > pos:
            yield text[pos : match.start()], False
        yield match.group(), True
        pos = match.end()
    if pos < len(text):
        yield text[pos:], False


def pretokens(text: str) -> list[str]:
    """The GPT-2 pre-tokens of `text`, equal to `PRETOKEN_RE.findall(text)`.

    Runs of ASCII (and of the plain non-ASCII symbols of `_plain_symbols`, such as curly
    quotes) go through the faster ASCII-only pattern; only the stretches around other
    characters go through the Unicode one. The text is cut just before an ASCII
    whitespace character that follows a non-space one: the pre-token before it is a
    non-space one that ends there (no alternative takes whitespace after a non-space
    character) and the pattern has no lookbehind, so pre-tokens on either side are the
    same as in the whole text.
    """
    if text.isascii():
        return ASCII_PRETOKEN_RE.findall(text)
    out: list[str] = []
    done = 0  # text[:done] is split
    for run in _NON_ASCII_RUN.finditer(text):
        if run.start() < done or _PLAIN_SYMBOLS.issuperset(run.group()):
            continue
        lo = _last_cut(text, done, run.start())
        after = _CUT_AFTER.search(text, run.end())
        hi = after.start() if after else len(text)
        out += ASCII_PRETOKEN_RE.findall(text, done, lo)
        out += PRETOKEN_RE.findall(text, lo, hi)
        done = hi
    out += ASCII_PRETOKEN_RE.findall(text, done)
    return out


def _last_cut(text: str, lo: int, hi: int) -> int:
    """The last cut (see `pretokens`) at a space or line break in `text[lo:hi]`, else `lo`."""
    c = hi
    while True:
        c = max(text.rfind(" ", lo, c), text.rfind("\n", lo, c))
        if c <= lo:
            return lo
        if not text[c - 1].isspace():
            return c


def crosses_special(buf: bytes | str, p: int, specials: Sequence[bytes | str]) -> bool:
    """True when some special-token occurrence in `buf` starts before `p` and ends after it."""
    for s in specials:
        if len(s) > 1 and buf.find(s, max(p - len(s) + 1, 0), p + len(s) - 1) != -1:
            return True
    return False


def find_cut(buf: bytes, lo: int, hi: int, specials: Sequence[bytes]) -> int:
    """First exact chunk boundary `q` in `buf` with `lo <= q < hi`, or -1 if there is none.

    The start of a special token is preferred; a line break after a printable non-space
    ASCII byte is the fallback (see the module docstring for why both are exact). The
    caller keeps the longest special token's length of context on both sides of
    `[lo, hi)` so that overlapping occurrences can be seen.
    """
    best = -1
    for s in specials:
        q = buf.find(s, lo, hi + len(s) - 1)
        while q != -1 and crosses_special(buf, q, specials):
            q = buf.find(s, q + 1, hi + len(s) - 1)
        if q != -1 and (best == -1 or q < best):
            best = q
    if best != -1:
        return best
    q = buf.find(b"\n", max(lo, 2), hi)
    while q != -1:
        cut = q - 1 if buf[q - 1] == 0x0D else q  # before the "\r" of a "\r\n"
        if 0x21 <= buf[cut - 1] <= 0x7E and cut >= lo and not crosses_special(buf, cut, specials):
            return cut
        q = buf.find(b"\n", q + 1, hi)
    return -1


def next_cut(f, pos: int, size: int, specials: Sequence[bytes]) -> int:
    """Absolute offset of the first exact boundary at or after `pos` in open binary file `f`, or -1.

    The text is taken to end at byte `size` (the file's end, or the end of a range of it):
    nothing at or after `size` is read.
    """
    margin = max((len(s) for s in specials), default=1)
    while pos < size:
        base = max(pos - margin, 0)
        f.seek(base)
        buf = f.read(min(pos - base + _MIB + margin, size - base))
        at_end = base + len(buf) >= size
        hi = len(buf) if at_end else len(buf) - margin
        cut = find_cut(buf, pos - base, hi, specials)
        if cut != -1:
            return base + cut
        if at_end:
            return -1
        pos = base + hi
    return -1


class TextRange(NamedTuple):
    """Bytes `[start, end)` of the text file at `path`: a whole file, or the part of one in a split."""

    path: str
    start: int
    end: int

    @classmethod
    def whole(cls, path: str | os.PathLike) -> "TextRange":
        """The whole file."""
        return cls(str(path), 0, os.path.getsize(path))

    @property
    def size(self) -> int:
        """Bytes in the range."""
        return self.end - self.start


def exact_blocks(f, start: int, end: int, target_size: int, specials: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """`(a, b)` offsets cutting bytes `[start, end)` of open binary file `f` into exact blocks of about `target_size`.

    A block is longer than `target_size` only when no exact boundary is found sooner.
    Encoding or counting the blocks one by one gives what the whole range gives.
    """
    pos = start
    while pos < end:
        cut = next_cut(f, pos + target_size, end, specials) if pos + target_size < end else -1
        stop = end if cut == -1 else cut
        yield pos, stop
        pos = stop


def chunk_boundaries(path: str | os.PathLike, target_size: int, special_tokens: Sequence[str] = ()) -> list[int]:
    """Byte offsets `[0, ..., file_size]` cutting the file into exact chunks of about `target_size`.

    A chunk is longer than `target_size` only when no exact boundary is found sooner.
    """
    size = os.path.getsize(path)
    specials = [s.encode("utf-8") for s in special_tokens]
    with open(path, "rb") as f:
        return [0] + [b for _, b in exact_blocks(f, 0, size, target_size, specials)] if size else [0]


UTF8_ERRORS = ("strict", "replace")


def check_utf8_errors(utf8_errors: str) -> None:
    """TokenizerError unless `utf8_errors` is "strict" or "replace"."""
    if utf8_errors not in UTF8_ERRORS:
        raise TokenizerError(f"utf8_errors must be 'strict' or 'replace', got {utf8_errors!r}; pick one of the two.")


def read_text(path: str | os.PathLike, start: int, end: int, utf8_errors: str = "strict") -> str:
    """Bytes `[start, end)` of the file decoded as UTF-8 (see `decode_utf8`)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return decode_utf8(data, path, start, utf8_errors)


def decode_utf8(data: bytes, path: str | os.PathLike, offset: int, utf8_errors: str = "strict") -> str:
    """Decode `data` (read from `path` at byte `offset`): "strict" says where it stops being UTF-8,
    "replace" turns each invalid sequence into U+FFFD.

    Chunks are cut before ASCII bytes or special tokens, where a UTF-8 decoder starts
    afresh, so decoding chunk by chunk gives the same text as decoding the whole file.
    """
    if utf8_errors == "replace":
        return data.decode("utf-8", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = offset + e.start
        line = 0  # unknown for a file that cannot be read again (a URL)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                line = f.read(where).count(b"\n") + 1
        at_line = f", line {line}" if line else ""
        raise NotUTF8Error(
            f"{path} is not UTF-8 text (bad byte {data[e.start]:#04x} at byte offset {where}{at_line}); "
            "convert it to UTF-8 (e.g. `iconv -t UTF-8`) or pass --utf8-errors replace.",
            str(path), where, data[e.start], line,
        ) from None


def count_text(text: str, special_re: "regex.Pattern | None", counts: Counter) -> None:
    """Add the pre-tokens of `text` (special tokens dropped) to `counts` (str -> count)."""
    pieces = special_re.split(text) if special_re is not None else (text,)
    for piece in pieces:
        counts.update(pretokens(piece))


def _count_chunk(special_re: "regex.Pattern | None", task: tuple) -> Counter:
    counts: Counter = Counter()
    if isinstance(task[0], list):  # texts of their own (e.g. records), each counted alone
        for text in task[0]:
            count_text(text, special_re, counts)
    else:
        path, start, end, utf8_errors = task
        count_text(read_text(path, start, end, utf8_errors), special_re, counts)
    return Counter({token.encode("utf-8"): n for token, n in counts.items()})


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    num_processes: int | None = None,
    progress: bool = False,
    utf8_errors: str = "strict",
) -> Counter:
    """Count each distinct pre-token (as UTF-8 bytes) of a text file, in parallel processes.

    See `count_pretokens_in_ranges`, of which this is the one-whole-file case.
    """
    return count_pretokens_in_ranges([TextRange.whole(path)], special_tokens, num_processes, progress, utf8_errors)


def count_pretokens_in_ranges(
    ranges: Sequence[TextRange],
    special_tokens: Sequence[str] = (),
    num_processes: int | None = None,
    progress: bool = False,
    utf8_errors: str = "strict",
    texts: Sequence[Sequence[str]] = (),
) -> Counter:
    """Count each distinct pre-token (as UTF-8 bytes) of several byte ranges of text files, in parallel.

    Each range is a text of its own (no pre-token spans two ranges). Ranges are cut at exact
    boundaries (see `exact_blocks`) into chunks of at most a few MiB, counted by worker
    processes (`tokenizer.workers`), so memory grows with the number of distinct
    pre-tokens, not the text size. The result is the same for any `num_processes`
    (default: one per CPU, at most 8, and none extra under 1 MiB). `utf8_errors` is as in
    `decode_utf8`. `texts` are more texts to count, in groups (one task each), every text
    one of its own (e.g. the records of a JSONL or Parquet file).
    """
    check_utf8_errors(utf8_errors)
    text_sizes = [sum(len(t) for t in group) for group in texts]
    size = sum(r.size for r in ranges) + sum(text_sizes)
    if num_processes is None:
        num_processes = min(available_cores(), 8, max(1, size // _MIB))
    num_processes = check_num_processes(num_processes)
    target = min(max(size // (2 * num_processes) + 1, _MIB), 4 * _MIB)
    specials = [s.encode("utf-8") for s in special_tokens]
    tasks = []
    for r in ranges:
        with open(r.path, "rb") as f:
            tasks += [(str(r.path), a, b, utf8_errors) for a, b in exact_blocks(f, r.start, r.end, target, specials)]
    tasks += [(list(group), 0, n, utf8_errors) for group, n in zip(texts, text_sizes)]
    total: Counter = Counter()
    with Progress(size, "pre-tokenize", enabled=progress, unit="MB", unit_scale=1e6) as bar:
        # Counts are sums, so the order in which chunks are counted does not matter.
        workers = min(num_processes, max(len(tasks), 1), max(1, size // _MIB))  # processes only pay off from MiBs
        results = ordered_map(_count_chunk, tasks, workers,
                              setup=special_token_regex, setup_args=(list(special_tokens),))
        for (_, a, b, _), counts in zip(tasks, results):
            total.update(counts)
            bar.update(b - a)
    return total
