"""Helpers for the tests of corpus formats and mixtures: a corpus's paragraphs written as records in every
format the token cache reads, the `.txt` file they are equivalent to (the records joined by the end-of-text
token), and a config of a 3-source mixture."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Sequence

EOT = "<|endoftext|>"
#: Record formats, and the suffix each is written with.
FORMATS = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "jsonl.zst": ".jsonl.zst", "parquet": ".parquet",
           "arrow": ".arrow", "dataset": ""}


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs (blocks between blank lines), non-empty."""
    return [p for p in text.split("\n\n") if p.strip()]


def jsonl_bytes(records: Sequence[str], field: str = "text") -> bytes:
    """One JSON object per line, with an extra key so that the text field has to be picked."""
    return "".join(json.dumps({"id": i, field: r}) + "\n" for i, r in enumerate(records)).encode("utf-8")


def write_records(records: Sequence[str], path_stem: Path, fmt: str, field: str = "text",
                  rows_per_group: int = 50) -> Path:
    """Write `records` as `fmt` (a key of FORMATS) at `path_stem` + its suffix; returns the path (a folder for
    "dataset", laid out as `datasets.save_to_disk` writes one: state.json and an Arrow stream file)."""
    path = Path(f"{path_stem}{FORMATS[fmt]}")
    if fmt == "jsonl":
        path.write_bytes(jsonl_bytes(records, field))
    elif fmt == "jsonl.gz":
        path.write_bytes(gzip.compress(jsonl_bytes(records, field)))
    elif fmt == "jsonl.zst":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(jsonl_bytes(records, field)))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": list(range(len(records))), field: list(records)}), path,
                       row_group_size=rows_per_group)
    elif fmt == "arrow":
        write_arrow_stream(records, path, field, rows_per_group)
    else:
        path.mkdir()
        write_arrow_stream(records, path / "data-00000-of-00001.arrow", field, rows_per_group)
        (path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                                                     "_split": "train"}))
        (path / "dataset_info.json").write_text("{}")
    return path


def write_arrow_stream(records: Sequence[str], path: Path, field: str = "text", rows_per_batch: int = 50) -> None:
    """An Arrow IPC stream file (what `datasets.save_to_disk` writes), a record batch per `rows_per_batch`."""
    import pyarrow as pa

    table = pa.table({field: list(records), "id": list(range(len(records)))})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=rows_per_batch):
            writer.write_batch(batch)


def write_mixture(folder: Path, text: str) -> Path:
    """A config file of a 3-source mixture (weights 0.6 / 0.3 / 0.1) cut from `text` (600 KB or more): 'web', the
    paragraphs of its first 400 KB up to the 1,500th as Parquet, 'code' the rest of them as JSONL.zst, 'books' its
    next 200 KB as a text file. Returns the config's path (`--config` it after a config of the other settings)."""
    records = paragraphs(text[:400_000])
    web = write_records(records[:1500], folder / "web", "parquet")
    code = write_records(records[1500:], folder / "code", "jsonl.zst")
    books = folder / "books.txt"
    books.write_text(text[400_000:600_000], encoding="utf-8")
    config = folder / "mixture.yaml"
    config.write_text(f"""data:
  sources:
    - {{name: web, files: [{web}], weight: 0.6}}
    - {{name: code, files: [{code}], weight: 0.3}}
    - {{name: books, files: [{books}], weight: 0.1}}
""")
    return config


def make_unreadable(monkeypatch, paths: Sequence[str | Path]) -> list[str]:
    """From now on (for this test), opening any of `paths` with `open` raises PermissionError, as a corpus
    made unreadable would; returns the list of every path opened after it, for the test to inspect."""
    import builtins
    import os

    corpus = {os.path.abspath(p) for p in paths}
    opened: list[str] = []
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        opened.append(os.path.abspath(file) if isinstance(file, (str, os.PathLike)) else str(file))
        if opened[-1] in corpus:
            raise PermissionError(13, "Permission denied (the test made the corpus unreadable)", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    return opened
