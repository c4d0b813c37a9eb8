"""The corpus formats the token cache reads: one reader per format behind one small interface.

An entry of `data.train_files` (or of a source's `files`) names a local file, a glob, a folder
written by `datasets.save_to_disk`, or a URL (`s3://`, `gs://`, `https://`, `hf://`). `locate`
turns entries into `Located` files; each file is then read by the reader of its format:

* `.txt` (and any name not listed below): plain UTF-8 text, one document per file;
* `.bin`: token ids, ours (with a `.bin.json` sidecar), llm.c's (a 256-int32 header), or a
  headerless array of uint16/uint32 ids (nanoGPT's `prepare.py`) with `data.token_dtype`;
* `.jsonl`, `.jsonl.gz`, `.jsonl.zst` (and `.ndjson`): one JSON object per line, a record each;
* `.parquet`: a record per row;
* `.arrow` and `datasets.save_to_disk` folders (their Arrow stream files): a record per row.

Every record is one document: its text is the `text_field` column or key. A record reader
(`RecordReader`) streams its file, row group by row group or line by line, so memory does not
grow with the file. pyarrow (Parquet, Arrow), zstandard (`.zst`) and fsspec (URLs) are optional
extras, imported only when a file needs them; a missing one is one line naming the install
command.

May import: `llm_lit.errors` and `tokenizer` (it is part of `llm_lit.data`).
"""

from llm_lit.data.formats.names import (
    RECORD_FORMATS,
    SUPPORTED,
    format_of,
)

__all__ = ["RECORD_FORMATS", "SUPPORTED", "format_of"]
