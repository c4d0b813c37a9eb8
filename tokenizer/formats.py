"""File formats: our JSON tokenizer file, GPT-2's vocab.json + merges.txt, and HF tokenizer.json.

All three spell a token's bytes as text with GPT-2's byte <-> character table: printable
bytes stand for themselves and the others (space, control bytes, ...) get a printable
stand-in (space is "Ġ", newline "Ċ"). So every token, even a partial UTF-8 sequence, is
one readable string without spaces, and a merge is written "left right".
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import TokenizerError

FORMAT = "llm_lit.tokenizer"
VERSION = 1


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value to a printable character.

    Bytes that are printable Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') map to
    themselves; the other 68 map, in byte order, to the characters from U+0100 up.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def token_to_text(token: bytes) -> str:
    """The GPT-2 printable spelling of a token's bytes."""
    return "".join(_BYTE_TO_CHAR[b] for b in token)


def text_to_token(text: str, where: str) -> bytes:
    """Inverse of `token_to_text`; TokenizerError naming `where` for a character outside the table."""
    try:
        return bytes(_CHAR_TO_BYTE[c] for c in text)
    except KeyError as e:
        raise TokenizerError(
            f"{where} has the token {text!r} with a character ({e.args[0]!r}) that is not in GPT-2's byte table; "
            "use a byte-level BPE file."
        ) from None


# ---------------------------------------------------------------- our JSON format


def to_dict(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> dict[str, Any]:
    """The JSON-able form: format, version, vocab (id -> spelled token), merges ("left right"), special tokens."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "special_tokens": list(special_tokens),
        "vocab": {str(i): token_to_text(t) for i, t in sorted(vocab.items())},
        "merges": [f"{token_to_text(a)} {token_to_text(b)}" for a, b in merges],
    }


def from_dict(d: Any, where: str = "tokenizer dict") -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """Parse `to_dict`'s form back into `(vocab, merges, special_tokens)`, checking format and version."""
    if not isinstance(d, dict):
        raise TokenizerError(f"{where} is not a JSON object; pass a file written by Tokenizer.save.")
    if d.get("format") != FORMAT:
        if "model" in d and "added_tokens" in d:
            raise TokenizerError(
                f"{where} is a Hugging Face tokenizer.json, not an {FORMAT} file; pass a file written by Tokenizer.save."
            )
        raise TokenizerError(
            f"{where} has format {d.get('format')!r}, not {FORMAT!r}; pass a file written by Tokenizer.save."
        )
    if d.get("kind", "bpe") != "bpe":
        raise TokenizerError(f"{where} is a {d['kind']!r} tokenizer, not byte-level BPE; load it with "
                             "tokenizer.load_tokenizer, which reads every kind.")
    if d.get("version") != VERSION:
        raise TokenizerError(
            f"{where} is {FORMAT} version {d.get('version')!r} but this code reads version {VERSION}; "
            "re-save it with a matching version of the tokenizer package."
        )
    try:
        vocab = {int(i): text_to_token(t, where) for i, t in d["vocab"].items()}
        merges = []
        for line in d["merges"]:
            left, right = line.split(" ")
            merges.append((text_to_token(left, where), text_to_token(right, where)))
        special_tokens = [str(s) for s in d["special_tokens"]]
    except (KeyError, ValueError, AttributeError, TypeError) as e:
        if isinstance(e, TokenizerError):
            raise
        raise TokenizerError(f"{where} is damaged ({type(e).__name__}: {e}); re-create it with Tokenizer.save.") from None
    check_no_id_gap(vocab, where)
    return vocab, merges, special_tokens


def check_no_id_gap(vocab: dict[int, bytes], where: str) -> None:
    """TokenizerError unless the ids are exactly 0 .. len(vocab) - 1: a gap would size a model (one row per id up to
    the largest) with rows no token uses, and a negative id names no row at all."""
    if not vocab or (min(vocab) == 0 and max(vocab) == len(vocab) - 1):
        return
    if min(vocab) < 0:
        raise TokenizerError(f"{where} has the negative token id {min(vocab)}, but ids run from 0, so re-create it "
                             "with Tokenizer.save.")
    missing = next(i for i in range(len(vocab) + 1) if i not in vocab)
    raise TokenizerError(f"{where} has no token with id {missing} though its ids run up to {max(vocab)}; every id "
                         "from 0 to the largest must be a token (a gap would give the model embedding rows no token "
                         "uses), so re-create it with Tokenizer.save.")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Load a JSON file, turning a missing, unreadable or non-JSON file into one TokenizerError."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TokenizerError(f"{what} {path} does not exist; check the path.") from None
    except IsADirectoryError:
        raise TokenizerError(f"{what} {path} is a folder; pass the path of the file.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{what} {path} is not valid JSON ({e}); pass a file in the right format.") from None


# ---------------------------------------------------------------- GPT-2 files


def read_gpt2_files(vocab_json: str | os.PathLike, merges_txt: str | os.PathLike) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Read GPT-2's `vocab.json` (spelled token -> id) and `merges.txt` (one "left right" per line)."""
    raw = read_json(vocab_json, "GPT-2 vocab file")
    if not isinstance(raw, dict):
        raise TokenizerError(f"GPT-2 vocab file {vocab_json} is not a JSON object of token -> id; pass GPT-2's vocab.json.")
    vocab = {int(i): text_to_token(t, str(vocab_json)) for t, i in raw.items()}
    try:
        with open(merges_txt, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise TokenizerError(f"GPT-2 merges file {merges_txt} does not exist; check the path.") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(
                f"line {number} of GPT-2 merges file {merges_txt} is {line!r}, not two tokens separated by one space; "
                "pass GPT-2's merges.txt."
            )
        merges.append((text_to_token(parts[0], str(merges_txt)), text_to_token(parts[1], str(merges_txt))))
    return vocab, merges


def gpt2_files_text(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """The text of `vocab.json` and `merges.txt` in GPT-2's format."""
    spelled = {token_to_text(t): i for i, t in sorted(vocab.items())}
    vocab_text = json.dumps(spelled, ensure_ascii=False)
    merges_text = "#version: 0.2\n" + "".join(f"{token_to_text(a)} {token_to_text(b)}\n" for a, b in merges)
    return vocab_text, merges_text


# ---------------------------------------------------------------- Hugging Face tokenizer.json


def hf_tokenizer_json(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_ids: dict[str, int]
) -> dict[str, Any]:
    """A `tokenizers` tokenizer.json: byte-level BPE, GPT-2 regex, special tokens as added tokens.

    With `add_prefix_space` off and `ignore_merges` off it gives the same ids as ours.
    """
    special_id_set = set(special_ids.values())
    hf_vocab = {token_to_text(t): i for i, t in sorted(vocab.items()) if i not in special_id_set}
    hf_vocab.update(special_ids)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for s, i in special_ids.items()
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": None,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": hf_vocab,
            "merges": [f"{token_to_text(a)} {token_to_text(b)}" for a, b in merges],
        },
    }
