"""Entries of a file list as the files they name: a file, a glob (sorted), a `datasets.save_to_disk`
folder (its Arrow files, in order) or a URL (and URL globs), each with what decides whether it changed.

Nothing but metadata is read: a local `stat` per file, one listing per remote glob, one metadata
request per remote file.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from llm_lit.data.formats import remote
from llm_lit.data.formats.names import format_of
from llm_lit.errors import UserError

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Located:
    """One input file: its absolute path (or URL), format, size, modification time and, for a remote
    object, the version its store reports (ETag or content hash)."""

    path: str
    format: str
    size: int
    mtime_ns: int
    version: Optional[str] = None

    @property
    def remote(self) -> bool:
        """Whether it is read through fsspec."""
        return remote.is_remote(self.path)


def is_glob(entry: str) -> bool:
    """Whether `entry` holds a glob character."""
    return any(c in entry for c in GLOB_CHARS)


def entry_key(entry: str) -> str:
    """The entry as the cache key records it: a URL as given, a local path made absolute (reads nothing)."""
    return str(entry) if remote.is_remote(str(entry)) else os.path.abspath(Path(entry).expanduser())


def locate(entry: str, what: str, flag: str) -> list[Located]:
    """The files `entry` names (see the module docstring); `UserError` for an entry that names none.

    `what` names the list in messages ("training corpus", "validation"); `flag` is the setting to fix.
    """
    entry = str(entry)
    if remote.is_remote(entry):
        found = [Located(url, format_of(url), int(info.get("size") or 0), remote.mtime_ns_of(info),
                         remote.version_of(info)) for url, info in remote.listing(entry)]
        if not found:
            raise UserError(f"The glob '{entry}' matches no object; check the URL ({flag}).")
        return found
    path = Path(entry).expanduser()
    if is_glob(entry):
        matches = sorted(p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p))
        if not matches:
            raise UserError(f"The glob '{entry}' matches no file (looked in '{os.path.abspath(path.parent)}'); fix "
                            f"{flag}.")
        return [_local(Path(p), what) for p in matches]
    if path.is_dir():
        return [_local(p, what) for p in dataset_folder_files(path, what, flag)]
    return [_local(path, what)]


def _local(path: Path, what: str) -> Located:
    if not path.is_file():
        raise UserError(f"The {what} file '{path}' does not exist; pass the path of an existing text file.")
    stat = path.stat()
    if stat.st_size == 0:
        raise UserError(f"The {what} file '{path}' is empty; pass a text file with some text in it.")
    return Located(os.path.abspath(path), format_of(path.name), stat.st_size, stat.st_mtime_ns)


def dataset_folder_files(folder: Path, what: str, flag: str) -> list[Path]:
    """The Arrow files of a folder written by `datasets.save_to_disk`, in the order its state.json lists them;
    `UserError` for a DatasetDict folder (naming its splits) or any other folder."""
    state, splits = folder / "state.json", folder / "dataset_dict.json"
    if state.is_file():
        try:
            names = [f["filename"] for f in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"The dataset folder '{folder}' has a state.json that cannot be read ({e}); save the "
                            "dataset again with datasets' save_to_disk.") from None
        return [folder / name for name in names]
    if splits.is_file():
        try:
            names = json.loads(splits.read_text(encoding="utf-8"))["splits"]
        except (ValueError, KeyError, TypeError):
            names = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        return _refuse_dataset_dict(folder, list(names), flag)
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))[:2]
    example = ", ".join(str(folder / name) for name in names) or f"{folder}/a.txt"
    raise UserError(f"The {what} file '{folder}' is a folder; list the text files in it instead, "
                    f"e.g. {flag} '[{example}]' (or a glob such as '{folder}/*.parquet').")


def _refuse_dataset_dict(folder: Path, names: list[str], flag: str) -> list[Path]:
    first = names[0] if names else "train"
    raise UserError(f"The folder '{folder}' holds a DatasetDict with the splits {', '.join(names) or '(none)'}; pass "
                    f"one split's folder, e.g. {flag} '[{folder / first}]'.")
