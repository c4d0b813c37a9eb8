"""Record readers: the text of every record of a JSONL, Parquet or Arrow file, in order, streaming.

One reader per format, behind one interface: `batches(raw)` yields lists of texts (whole records)
with the bytes of the file they account for; `check(raw)` reads only what it takes to refuse a
file whose text field is missing. Every problem is one sentence naming the file and the line or
row.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO, Iterator

from llm_lit.data.formats.compressed import Truncated, decompressed
from llm_lit.errors import UserError

#: Records per batch read from a columnar file.
ROWS_PER_BATCH = 4096
#: Text bytes per batch of JSONL records.
JSONL_BATCH_BYTES = 1 << 20
_JSON = json.JSONDecoder()
FIELD_FIX = "set data.text_field (or the source's text_field) to the one that holds the text"


class RecordReader:
    """Reads one file of records. `path` names it in messages; `text_field` is the column or key of the text."""

    #: Whether `batches` reads the file from start to end (so it can be hashed on the way).
    sequential = True

    def __init__(self, path: str, fmt: str, text_field: str, size: int = 0) -> None:
        self.path, self.format, self.text_field, self.size = path, fmt, text_field, size

    def check(self, raw: BinaryIO) -> None:
        """Refuse the file if its text field is missing (reads the schema or the first record)."""
        for _ in self.batches(raw, limit=1):
            return

    def batches(self, raw: BinaryIO, limit: int | None = None) -> Iterator[tuple[list[str], int]]:
        """`(texts, bytes consumed)` in file order; `limit` stops after that many records."""
        raise NotImplementedError


class JsonlReader(RecordReader):
    """One JSON object per line (plain, gzip or zstandard); blank lines are skipped."""

    def batches(self, raw: BinaryIO, limit: int | None = None) -> Iterator[tuple[list[str], int]]:
        counted = _Counting(raw)
        stream = decompressed(counted, self.format, self.path)
        texts: list[str] = []
        size = done = 0
        number = 0
        try:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                text = self._text(line, number)
                texts.append(text)
                size += len(text)
                done += 1
                if size >= JSONL_BATCH_BYTES or (limit is not None and done >= limit):
                    yield texts, counted.take()
                    texts, size = [], 0
                    if limit is not None and done >= limit:
                        return
        except Truncated as e:
            raise UserError(f"The file '{self.path}' is truncated or damaged after line {number} ({e}); download or "
                            "write it again.") from None
        if texts or counted.pending:
            yield texts, counted.take()

    def _text(self, line: bytes, number: int) -> str:
        try:
            record = _JSON.decode(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"Line {number} of '{self.path}' is not UTF-8; convert the file to UTF-8.") from None
        except ValueError as e:
            raise UserError(f"Line {number} of '{self.path}' is not JSON ({getattr(e, 'msg', e)}); fix or remove that "
                            "line (each line must be one JSON object).") from None
        if not isinstance(record, dict):
            raise UserError(f"Line {number} of '{self.path}' is a JSON {_json_type(record)}, not an object; each line "
                            f"must be one JSON object with a '{self.text_field}' key.")
        if self.text_field not in record:
            keys = ", ".join(list(record)[:12]) or "none"
            raise UserError(f"Line {number} of '{self.path}' has no key '{self.text_field}' (its keys: {keys}); "
                            f"{FIELD_FIX}.")
        text = record[self.text_field]
        if not isinstance(text, str):
            raise UserError(f"Line {number} of '{self.path}': '{self.text_field}' is {_json_type(text)}, not a string; "
                            f"fix that record or {FIELD_FIX}.")
        return text


class ParquetReader(RecordReader):
    """A Parquet file, its text column read a batch of rows at a time (row group by row group)."""

    sequential = False

    def batches(self, raw: BinaryIO | str, limit: int | None = None) -> Iterator[tuple[list[str], int]]:
        pq = _pyarrow(self.path, "parquet")
        try:
            parquet = pq.ParquetFile(raw)
        except Exception as e:
            raise _damaged(self.path, "Parquet", e) from None
        schema = parquet.schema_arrow
        self._check_column(schema)
        total_rows = max(parquet.metadata.num_rows, 1)
        rows = accounted = 0
        try:
            for batch in parquet.iter_batches(batch_size=ROWS_PER_BATCH, columns=[self.text_field], use_threads=False):
                texts = self._texts(batch.column(0), rows)
                rows += len(texts)
                share = self.size * rows // total_rows
                yield (texts[:limit] if limit is not None else texts), share - accounted
                accounted = share
                if limit is not None and rows >= limit:
                    return
        except UserError:
            raise
        except Exception as e:
            raise _damaged(self.path, "Parquet", e, rows) from None

    def _check_column(self, schema: Any) -> None:
        if self.text_field not in schema.names:
            names = ", ".join(schema.names[:12]) or "none"
            raise UserError(f"'{self.path}' has no column '{self.text_field}' (its columns: {names}); {FIELD_FIX}.")
        kind = schema.field(self.text_field).type
        if not _is_text(kind):
            raise UserError(f"The column '{self.text_field}' of '{self.path}' holds {kind}, not strings; {FIELD_FIX}.")

    def _texts(self, column: Any, first_row: int) -> list[str]:
        """The column's values as str; `UserError` naming the row of the first null."""
        if column.null_count:
            import pyarrow.compute as pc

            row = first_row + pc.index(pc.is_null(column), True).as_py()
            raise UserError(f"Row {row} of '{self.path}' has no text (its '{self.text_field}' is null); fill or drop "
                            "that row.")
        return column.to_pylist()


class ArrowReader(ParquetReader):
    """An Arrow IPC file (`datasets.save_to_disk` writes the stream form), read a record batch at a time."""

    sequential = True

    def batches(self, raw: BinaryIO, limit: int | None = None) -> Iterator[tuple[list[str], int]]:
        _pyarrow(self.path, "arrow")
        import pyarrow as pa

        counted = _Counting(raw)
        try:
            reader = pa.ipc.open_stream(counted)
        except Exception:
            try:  # the random-access file form
                raw.seek(0)
                reader = pa.ipc.open_file(raw)
            except Exception as e:
                raise _damaged(self.path, "Arrow", e) from None
        self._check_column(reader.schema)
        index = reader.schema.get_field_index(self.text_field)
        rows = 0
        try:
            for batch in _record_batches(reader):
                texts = self._texts(batch.column(index), rows)
                rows += len(texts)
                yield (texts[:limit] if limit is not None else texts), counted.take()
                if limit is not None and rows >= limit:
                    return
        except UserError:
            raise
        except Exception as e:
            raise _damaged(self.path, "Arrow", e, rows) from None


def reader_for(path: str, fmt: str, text_field: str, size: int = 0) -> RecordReader:
    """The reader of a record format ("jsonl", "jsonl.gz", "jsonl.zst", "parquet", "arrow") for a file of `size` bytes."""
    cls = JsonlReader if fmt.startswith("jsonl") else ParquetReader if fmt == "parquet" else ArrowReader
    return cls(path, fmt, text_field, size)


def _record_batches(reader: Any) -> Iterator[Any]:
    if hasattr(reader, "num_record_batches"):  # the file form
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    else:
        yield from reader


class _Counting:
    """A binary stream that counts the bytes read through it (`take` returns those not yet reported)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.total = self._reported = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.total += len(data)
        return data

    def readinto(self, b) -> int:
        n = self._raw.readinto(b)
        self.total += n or 0
        return n

    def __iter__(self):
        for line in self._raw:
            self.total += len(line)
            yield line

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False

    @property
    def pending(self) -> int:
        """Bytes read since the last `take`."""
        return self.total - self._reported

    def take(self) -> int:
        """Bytes read since the last call."""
        n, self._reported = self.total - self._reported, self.total
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _pyarrow(path: str, what: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(f"Reading '{path}' needs pyarrow, which is not installed; pip install 'llm_lit[formats]' (or "
                        "pip install pyarrow).") from None
    return pq


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):
        checks.append(pa.types.is_string_view)
    return any(check(kind) for check in checks)


def _damaged(path: str, what: str, error: BaseException, rows: int | None = None) -> UserError:
    where = f" after row {rows}" if rows else ""
    detail = " ".join(str(error).split())[:160]
    return UserError(f"The file '{path}' is not a complete {what} file{where} ({detail}); it may be truncated or "
                     "damaged: download or write it again.")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
