"""Tokenizer files of a Hugging Face model folder: read them into our `BPETokenizer`, write ours out.

Reading accepts the two byte-level BPE spellings a GPT-2-style folder may hold:
`tokenizer.json` (the `tokenizers` library's file) or `vocab.json` + `merges.txt` (GPT-2's own).
Only what our tokenizer computes identically is accepted: a BPE model behind GPT-2's
`ByteLevel` pre-tokenizer (its regex, no prefix space), no normalizer, and nothing added
around the ids. Anything else (SentencePiece, WordPiece, another split regex, BOS templates)
is refused with a sentence naming what differs, never silently encoded differently.

Writing produces `tokenizer.json` (via `BPETokenizer.save_hf`), GPT-2's `vocab.json` +
`merges.txt`, and a `tokenizer_config.json` that makes `AutoTokenizer.from_pretrained(dir)`
load them as a plain fast tokenizer that adds no tokens and cleans up no spaces, with the
special-token roles as `bos_token` / `eos_token` / `pad_token` / `unk_token`. Reading takes
the roles back from those keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm_lit.errors import UserError
from tokenizer import END_OF_TEXT, BPETokenizer, TokenizerError
from tokenizer.atomic import atomic_write
from tokenizer.formats import read_json, text_to_token
from tokenizer.roles import ROLES

#: The special token used as end-of-text (and begin-of-text) id in exported configs when present.
#: tokenizer_config.json key holding llm_lit's own roles (transformers ignores it).
ROLES_KEY = "llm_lit_roles"


class HFTokenizerError(UserError, ValueError):
    """A Hugging Face tokenizer file our byte-level BPE cannot reproduce exactly."""


# ---------------------------------------------------------------------------------------- read


def load_hf_tokenizer(folder: str | os.PathLike) -> BPETokenizer:
    """Our `BPETokenizer` from a Hugging Face folder: `tokenizer.json`, else `vocab.json` + `merges.txt`."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return with_roles_from_configs(tokenizer_from_hf_json(folder / "tokenizer.json"), folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab_strings = read_json(folder / "vocab.json", "GPT-2 vocab file")
        specials = _special_tokens_from_configs(folder, vocab_strings if isinstance(vocab_strings, dict) else {})
        tok = BPETokenizer.from_gpt2_files(folder / "vocab.json", folder / "merges.txt", specials)
        return with_roles_from_configs(tok, folder)
    raise HFTokenizerError(
        f"{folder} has no tokenizer.json and no vocab.json + merges.txt; "
        "copy the tokenizer files of the model into that folder."
    )


def tokenizer_from_hf_json(path: str | os.PathLike) -> BPETokenizer:
    """Our `BPETokenizer` from a `tokenizers` byte-level BPE `tokenizer.json`, giving identical ids."""
    where = f"tokenizer.json {path}"
    d = read_json(path, "tokenizer.json")
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
        raise HFTokenizerError(f"{where} has no 'model' object; pass a tokenizer.json written by the tokenizers library.")
    model = d["model"]
    _check_supported(d, model, where)
    added = [t for t in d.get("added_tokens") or [] if isinstance(t, dict)]
    added_ids = {int(t["id"]): str(t["content"]) for t in added}
    vocab: dict[int, bytes] = {}
    for spelled, i in model["vocab"].items():
        if i not in added_ids:
            vocab[int(i)] = text_to_token(spelled, where)
    for i, content in added_ids.items():
        vocab[i] = content.encode("utf-8")
    merges = [_merge_pair(m, where) for m in model.get("merges") or []]
    specials = [added_ids[i] for i in sorted(added_ids)]
    try:
        tok = BPETokenizer(vocab, merges, specials)
    except TokenizerError as e:
        raise HFTokenizerError(f"{where} is not a complete byte-level BPE ({e}).") from None
    for i, content in added_ids.items():
        if tok.token_to_id(content) != i:
            raise HFTokenizerError(
                f"{where} gives the added token {content!r} id {i} but its bytes also spell id "
                f"{tok.token_to_id(content)}; use a tokenizer.json whose added tokens are unique."
            )
    return tok


def _check_supported(d: dict[str, Any], model: dict[str, Any], where: str) -> None:
    """Refuse every tokenizer.json setting under which our encoder would give other ids."""
    if model.get("type") != "BPE":
        raise HFTokenizerError(f"{where} is a {model.get('type')} tokenizer, not byte-level BPE; only GPT-2-style BPE tokenizers can be imported.")
    if not isinstance(model.get("vocab"), dict):
        raise HFTokenizerError(f"{where} has no BPE vocab object; pass a complete tokenizer.json.")
    if d.get("normalizer") is not None:
        kind = d["normalizer"].get("type") if isinstance(d["normalizer"], dict) else d["normalizer"]
        raise HFTokenizerError(f"{where} normalizes text first ({kind}), which llm_lit's tokenizer does not; only tokenizers without a normalizer can be imported.")
    if not _is_gpt2_byte_level(d.get("pre_tokenizer")):
        raise HFTokenizerError(
            f"{where} splits text with {_describe(d.get('pre_tokenizer'))}, not GPT-2's ByteLevel regex without a prefix space; "
            "only GPT-2-style byte-level tokenizers can be imported."
        )
    post = d.get("post_processor")
    if not _adds_nothing(post):
        raise HFTokenizerError(f"{where} adds tokens around the text ({_describe(post)}), which llm_lit's tokenizer does not; remove the post_processor.")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise HFTokenizerError(f"{where} sets BPE {key}={model[key]!r}, which llm_lit's byte-level BPE does not support; use a GPT-2-style tokenizer.")
    if model.get("ignore_merges"):
        raise HFTokenizerError(f"{where} sets ignore_merges, which llm_lit's BPE does not implement; use a tokenizer with ignore_merges false.")
    for t in d.get("added_tokens") or []:
        if not isinstance(t, dict) or "id" not in t or "content" not in t:
            raise HFTokenizerError(f"{where} has a malformed added token {t!r}; pass a complete tokenizer.json.")
        if t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
            raise HFTokenizerError(f"{where} strips spaces around the added token {t['content']!r}, which llm_lit's special tokens do not; set lstrip, rstrip and single_word to false.")


def _is_gpt2_byte_level(pre: Any) -> bool:
    if isinstance(pre, dict) and pre.get("type") == "Sequence" and len(pre.get("pretokenizers") or []) == 1:
        pre = pre["pretokenizers"][0]
    return (isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
            and not pre.get("add_prefix_space", False))


def _adds_nothing(post: Any) -> bool:
    """True for post-processors that leave the ids alone: none, ByteLevel (offsets only), a template of
    just the text (what transformers writes for GPT-2), or a Sequence of those."""
    if post is None:
        return True
    if not isinstance(post, dict):
        return False
    kind = post.get("type")
    if kind == "Sequence":
        return all(_adds_nothing(p) for p in post.get("processors") or [])
    if kind == "TemplateProcessing":
        return all(isinstance(piece, dict) and set(piece) == {"Sequence"} for piece in post.get("single") or [])
    return kind == "ByteLevel"


def _describe(component: Any) -> str:
    if isinstance(component, dict):
        inner = [_describe(p) for p in component.get("pretokenizers") or component.get("processors") or []]
        return component.get("type", "?") + (f"({', '.join(inner)})" if inner else "")
    return repr(component)


def _merge_pair(merge: Any, where: str) -> tuple[bytes, bytes]:
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if not isinstance(parts, list) or len(parts) != 2:
        raise HFTokenizerError(f"{where} has the merge {merge!r}, not two tokens; pass a complete tokenizer.json.")
    return text_to_token(parts[0], where), text_to_token(parts[1], where)


def _special_tokens_from_configs(folder: Path, vocab_strings: dict[str, Any]) -> list[str]:
    """Special tokens named by `special_tokens_map.json` / `tokenizer_config.json` / `added_tokens.json`.

    Falls back to `<|endoftext|>` when GPT-2's vocab has it, as GPT-2's own tokenizer does.
    """
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value and value not in found:
            found.append(value)

    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        config = read_json(path, name)
        if not isinstance(config, dict):
            continue
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            add(config.get(key))
        for value in config.get("additional_special_tokens") or []:
            add(value)
        for value in (config.get("added_tokens_decoder") or {}).values():
            add(value)
    if (folder / "added_tokens.json").is_file():
        extra = read_json(folder / "added_tokens.json", "added_tokens.json")
        for value in extra if isinstance(extra, dict) else {}:
            add(value)
    if not found and END_OF_TEXT in vocab_strings:
        found.append(END_OF_TEXT)
    return found


def with_roles_from_configs(tok: BPETokenizer, folder: Path) -> BPETokenizer:
    """`tok` with the roles the folder's configs give: `llm_lit_roles` in `tokenizer_config.json` (what our
    export writes) when present, else its `bos_token` / `eos_token` / `pad_token` / `unk_token` (and
    those of `special_tokens_map.json`) that name one of `tok`'s special tokens."""
    roles: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        config = read_json(folder / name, name) if (folder / name).is_file() else None
        if not isinstance(config, dict):
            continue
        if isinstance(config.get(ROLES_KEY), dict):
            return tok.with_roles({r: t for r, t in config[ROLES_KEY].items() if tok.token_to_id(str(t)) is not None})
        for role in ROLES:
            value = config.get(f"{role}_token")
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and tok.token_to_id(value) is not None:
                roles[role] = value
    return tok.with_roles(roles)


# ---------------------------------------------------------------------------------------- write


def end_of_text_id(tokenizer: BPETokenizer) -> int | None:
    """The id exported configs use for bos/eos when no role names them: `<|endoftext|>` if special, else the
    first special token."""
    if tokenizer.token_to_id(END_OF_TEXT) is not None:
        return tokenizer.token_to_id(END_OF_TEXT)
    specials = tokenizer.special_tokens
    return tokenizer.token_to_id(specials[0]) if specials else None


def hf_roles(tokenizer: BPETokenizer) -> dict[str, str]:
    """Role -> special token as a Hugging Face folder states them (`bos_token`, ...): the tokenizer's roles,
    or, for a tokenizer without any, GPT-2's convention of the end-of-text token as both BOS and EOS."""
    if tokenizer.roles:
        return tokenizer.roles
    eot = end_of_text_id(tokenizer)
    if eot is None:
        return {}
    name = tokenizer.vocab[eot].decode("utf-8")
    return {"bos": name, "eos": name}


def hf_role_ids(tokenizer: BPETokenizer) -> dict[str, int | None]:
    """`bos_token_id`, `eos_token_id` and `pad_token_id` of `config.json` / `generation_config.json`."""
    roles = hf_roles(tokenizer)
    return {f"{role}_token_id": tokenizer.token_to_id(roles[role]) if role in roles else None
            for role in ("bos", "eos", "pad")}


def write_hf_tokenizer(tokenizer: BPETokenizer, folder: str | os.PathLike, model_max_length: int) -> None:
    """Write `tokenizer.json`, `vocab.json`, `merges.txt` and `tokenizer_config.json` into `folder`."""
    folder = Path(folder)
    tokenizer.save_hf(folder / "tokenizer.json")
    tokenizer.save_gpt2_files(folder / "vocab.json", folder / "merges.txt")
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(tokenizer.token_to_id(s)): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                             "single_word": False, "special": True}
            for s in tokenizer.special_tokens
        },
    }
    config.update({f"{role}_token": token for role, token in hf_roles(tokenizer).items()})
    config[ROLES_KEY] = tokenizer.roles  # exactly ours, so that importing the folder gives them back
    write_json(folder / "tokenizer_config.json", config)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON (atomically)."""
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
