"""Which format a file name says, and the formats that are refused with the list of supported ones."""

from __future__ import annotations

from llm_lit.errors import UserError

#: Suffix (lower case) -> format; the longest suffix of a name that is listed wins.
FORMATS = {
    ".txt": "txt",
    ".bin": "tokens",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".jsonl.zst": "jsonl.zst",
    ".jsonl.zstd": "jsonl.zst",
    ".ndjson.zst": "jsonl.zst",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
#: Formats whose every record is a document (the others are one document per file).
RECORD_FORMATS = ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "arrow")
#: Data formats that are not read (any other name is read as plain text, as a .txt file is).
REFUSED = (".json", ".json.gz", ".json.zst", ".csv", ".tsv", ".gz", ".zst", ".zstd", ".bz2", ".xz", ".lz4", ".zip",
           ".tar", ".tgz", ".7z", ".npy", ".npz", ".pt", ".pth", ".pkl", ".pickle", ".h5", ".hdf5", ".avro", ".orc",
           ".feather", ".jsonl.bz2", ".jsonl.xz", ".jsonl.lz4", ".xlsx", ".pdf", ".safetensors", ".ckpt")
SUPPORTED = (".txt (or any plain text file), .bin token files, .jsonl, .jsonl.gz, .jsonl.zst, .parquet, .arrow, "
             "folders written by datasets.save_to_disk, and globs of these")


def _suffix(name: str, table) -> str | None:
    lower = name.lower()
    found = [s for s in table if lower.endswith(s)]
    return max(found, key=len) if found else None


def format_of(name: str) -> str:
    """The format of a file (or URL) by its name: a value of `FORMATS` ("txt" for any unlisted name);
    `UserError` naming the supported formats for a data format that is not read."""
    listed = _suffix(name, FORMATS)
    refused = _suffix(name, REFUSED)
    if refused is not None and (listed is None or len(refused) > len(listed)):
        hint = " (a file of one JSON object per line is read when named .jsonl)" if ".json" in refused else ""
        raise UserError(f"The corpus file '{name}' has the extension {refused}, which is not read{hint}; the supported "
                        f"inputs are {SUPPORTED}.")
    return FORMATS[listed] if listed else "txt"
