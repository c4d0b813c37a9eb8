"""Byte-level BPE training: `train_bpe(path, vocab_size, special_tokens) -> (vocab, merges)`.

Id layout (a deliberate choice): ids 0..255 are the single bytes, so a byte's id equals
its value; then the special tokens in the order given; then one id per merge, in merge
order. (CS336 puts special tokens first; bytes first keeps byte ids fixed whatever the
special tokens are.)

The merge loop works on *distinct* pre-tokens ("words") with their counts, never on the
corpus itself:

* `pair_counts[(a, b)]` is how often the adjacent pair occurs, over all words x counts;
* `where[(a, b)]` lists the words that (may) contain it; entries are added when a pair
  appears and never removed, so a word is checked when it is visited;
* a heap orders pairs by (count desc, byte strings desc) and is fixed up lazily: a popped
  entry whose count is stale is dropped, and every pair whose count changes is pushed
  again with its new count.

Merging `(a, b) -> c` visits only the words that contain the pair and adjusts the counts
of the pairs next to each occurrence, so no step recounts all pairs.
"""

from __future__ import annotations

import heapq
import os
from collections import defaultdict
from typing import Iterable, Sequence

from .errors import TokenizerError
from .pretokenize import TextRange, count_pretokens_in_ranges
from .progress import Progress


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str] | None = None,
    num_processes: int | None = None,
    progress: bool = False,
    utf8_errors: str = "strict",
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on the UTF-8 text file at `input_path`.

    Returns `vocab` (id -> token bytes; 256 bytes, then `special_tokens`, then merges) and
    `merges` (pairs of token bytes, in the order they were learned). Training stops early
    (a smaller vocab) if the corpus runs out of pairs. The result is the same for any
    `num_processes` (pre-tokenization runs in that many processes; default one per CPU).
    A file that is not UTF-8 is refused, saying where, unless `utf8_errors="replace"`
    (invalid bytes become U+FFFD).
    """
    _check_vocab_size(vocab_size, _check_special_tokens(special_tokens))
    _check_corpus(input_path)
    return train_bpe_on_ranges([TextRange.whole(input_path)], vocab_size, special_tokens, num_processes, progress,
                               utf8_errors)


def train_bpe_on_ranges(
    ranges: Sequence[TextRange],
    vocab_size: int,
    special_tokens: Sequence[str] | None = None,
    num_processes: int | None = None,
    progress: bool = False,
    utf8_errors: str = "strict",
    texts: Sequence[Sequence[str]] = (),
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """`train_bpe` on several byte ranges of text files, each a text of its own (e.g. a corpus
    of many files, or a sample of one from `tokenizer.sample.sample_ranges`), and on `texts`
    (groups of texts held in memory, such as records, each a text of its own).

    Training on ranges that are separate files gives the merges of training on their
    concatenation with a special token between them (no pre-token crosses a special token).
    """
    special_tokens = _check_special_tokens(special_tokens)
    _check_vocab_size(vocab_size, special_tokens)
    word_counts = count_pretokens_in_ranges(ranges, special_tokens, num_processes, progress, utf8_errors, texts)
    vocab = {i: bytes([i]) for i in range(256)}
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    merges = learn_merges(word_counts.items(), vocab, vocab_size - len(vocab), progress)
    return vocab, merges


_INVERT = bytes(range(255, -1, -1))


def descending_key(token: bytes) -> bytes:
    """A byte string whose ascending order is the *descending* lexicographic order of `token`.

    Each byte x becomes the two bytes (1, 255 - x) and the end becomes (2,), so a proper
    prefix sorts after its extensions. Lets a min-heap break count ties toward the
    greatest pair.
    """
    key = bytearray(2 * len(token) + 1)
    key[0:-1:2] = b"\x01" * len(token)
    key[1::2] = token.translate(_INVERT)
    key[-1] = 2
    return bytes(key)


def learn_merges(
    word_counts: Iterable[tuple[bytes, int]],
    vocab: dict[int, bytes],
    num_merges: int,
    progress: bool = False,
) -> list[tuple[bytes, bytes]]:
    """Learn up to `num_merges` merges from `(pre-token bytes, count)` pairs; adds new tokens to `vocab`.

    `vocab` must map ids 0..len(vocab)-1, with ids 0..255 the single bytes; each merge
    gets the next id. Each step merges the most frequent adjacent pair, ties broken by
    the greatest `(vocab[a], vocab[b])`.
    """
    words: list[list[int]] = []
    freqs: list[int] = []
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], list[int]] = defaultdict(list)
    for token, count in word_counts:
        if len(token) < 2:
            continue  # a single byte has no pair to merge
        word = list(token)
        wi = len(words)
        words.append(word)
        freqs.append(count)
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            where[pair].append(wi)

    keys = {i: descending_key(t) for i, t in vocab.items()}
    heap = [(-n, keys[a], keys[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    with Progress(num_merges, "merge", enabled=progress, unit="merges") as bar:
        while len(merges) < num_merges:
            best = _pop_best(heap, pair_counts, keys)
            if best is None:
                break  # every word is a single token: nothing left to merge
            a, b = best
            c = len(vocab)  # ids are 0..len(vocab)-1, so this is the next free one
            vocab[c] = vocab[a] + vocab[b]
            keys[c] = descending_key(vocab[c])
            merges.append((vocab[a], vocab[b]))
            for pair in _apply_merge(a, b, c, words, freqs, pair_counts, where):
                heapq.heappush(heap, (-pair_counts[pair], keys[pair[0]], keys[pair[1]], pair[0], pair[1]))
            bar.update()
    return merges


def _pop_best(heap: list, pair_counts: dict[tuple[int, int], int], keys: dict[int, bytes]) -> tuple[int, int] | None:
    """Pop the pair with the highest current count (ties: greatest byte strings), or None.

    Counts only ever *rise* for pairs that are pushed at once, so an entry whose count is
    above the pair's current count is stale: it is pushed back with the current count
    (or dropped at zero) and the search goes on.
    """
    while heap:
        neg_count, key_a, key_b, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count == -neg_count:
            return a, b
        if count > 0:
            heapq.heappush(heap, (-count, key_a, key_b, a, b))
    return None


def _apply_merge(
    a: int,
    b: int,
    c: int,
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[tuple[int, int], int],
    where: dict[tuple[int, int], list[int]],
) -> set[tuple[int, int]]:
    """Replace every `a b` by `c` in the words that contain it, updating pair counts in place.

    Returns the new pairs (those containing `c`), whose counts rose from zero. Occurrences
    merge left to right without overlap (`a a a` with `a + a` gives `c a`). Around an
    occurrence, the left pair `(x, a)` becomes `(x, c)` and the right pair `(b, y)` becomes
    `(c, y)`; when two occurrences touch, the `(b, a)` between them becomes one `(c, c)`.
    """
    new_pairs: set[tuple[int, int]] = set()
    for wi in set(where.pop((a, b), ())):
        word = words[wi]
        f = freqs[wi]
        last_merged = -2  # index of the last c this word got in this step
        remaining = word.count(a)  # a's at index >= i, so index() below always finds one
        i = 0
        while remaining > 0 and i < len(word) - 1:
            i = word.index(a, i)
            remaining -= 1
            if i + 1 >= len(word) or word[i + 1] != b:
                i += 1
                continue
            if a == b:
                remaining -= 1
            n = len(word)
            pair_counts[(a, b)] -= f
            if i > 0:
                if last_merged == i - 1:
                    pair = (c, c)  # the (b, a) between the two was taken off below
                else:
                    left = word[i - 1]
                    pair_counts[(left, a)] -= f
                    pair = (left, c)
                pair_counts[pair] += f
                new_pairs.add(pair)
                where[pair].append(wi)
            if i + 2 < n:
                right = word[i + 2]
                pair_counts[(b, right)] -= f
                if not (right == a and i + 3 < n and word[i + 3] == b):
                    pair = (c, right)
                    pair_counts[pair] += f
                    new_pairs.add(pair)
                    where[pair].append(wi)
            word[i : i + 2] = (c,)
            last_merged = i
            i += 1
    del pair_counts[(a, b)]
    return new_pairs


def _check_special_tokens(special_tokens: Sequence[str] | None) -> list[str]:
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str):
        raise TokenizerError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}; wrap it in a list.")
    tokens = list(special_tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"special token {token!r} is not a non-empty string; pass special tokens as non-empty strings.")
    if len(set(tokens)) != len(tokens):
        duplicate = next(t for t in tokens if tokens.count(t) > 1)
        raise TokenizerError(f"special token {duplicate!r} is listed twice; list each special token once.")
    return tokens


def _check_vocab_size(vocab_size: int, special_tokens: list[str]) -> None:
    minimum = 256 + len(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TokenizerError(f"vocab_size must be an integer, got {vocab_size!r}; pass a whole number such as 10000.")
    if vocab_size < minimum:
        raise TokenizerError(
            f"vocab_size {vocab_size} is smaller than the 256 byte tokens plus {len(special_tokens)} special "
            f"token(s); use a vocab_size of at least {minimum}."
        )


def _check_corpus(input_path: str | os.PathLike) -> None:
    if not os.path.exists(input_path):
        raise TokenizerError(f"corpus file {input_path} does not exist; pass the path of a UTF-8 text file.")
    if os.path.isdir(input_path):
        raise TokenizerError(f"corpus path {input_path} is a folder; pass the path of a UTF-8 text file.")
    if os.path.getsize(input_path) == 0:
        raise TokenizerError(f"corpus file {input_path} is empty; pass a file with some text in it.")
