"""Every bad input of the corpus formats and sources is one sentence naming the file and the line or row
(and the fix), and leaves nothing half-written in the cache."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from format_helpers import EOT, jsonl_bytes, paragraphs, write_records
from llm_lit.commands.cli import main
from llm_lit.data import TextDataModule
from llm_lit.data.formats import records as records_module
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
RECORDS = paragraphs(TEXT[:60_000])
DEBUG_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "debug.yaml"


def _prepare(tmp_path, *train, **kwargs):
    return prepare_token_cache([str(p) for p in train], None, 0.1, 300, [EOT], tmp_path / "cache", num_proc=1,
                               **kwargs)


def _nothing_left(tmp_path) -> bool:
    return all(not list(folder.iterdir()) for folder in (tmp_path / "cache").iterdir())


def test_a_jsonl_line_without_the_text_key_lists_its_keys(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"id": 2, "body": "x"}) + "\n")
    with pytest.raises(UserError, match=r"^Line 2 of '.*a.jsonl' has no key 'text' \(its keys: id, body\); set "
                                        r"data.text_field \(or the source's text_field\) to the one that holds the text\.$"):
        _prepare(tmp_path, path)


def test_a_parquet_file_without_the_text_column_lists_its_columns(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "body": ["a", "b"]}), tmp_path / "a.parquet")
    with pytest.raises(UserError, match=r"^'.*a.parquet' has no column 'text' \(its columns: id, body\); set "
                                        r"data.text_field"):
        _prepare(tmp_path, tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "b.parquet")
    with pytest.raises(UserError, match=r"^The column 'text' of '.*b.parquet' holds int64, not strings; set "
                                        r"data.text_field"):
        _prepare(tmp_path, tmp_path / "b.parquet")
    assert _nothing_left(tmp_path)


def test_a_value_that_is_not_a_string_names_its_row_or_line(tmp_path):
    pq.write_table(pa.table({"text": ["a"] * 7 + [None] + ["b"] * 100}), tmp_path / "a.parquet", row_group_size=5)
    with pytest.raises(UserError, match=r"^Row 7 of '.*a.parquet' has no text \(its 'text' is null\); fill or drop "
                                        r"that row\.$"):
        _prepare(tmp_path, tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": 3}\n')
    with pytest.raises(UserError, match=r"^Line 3 of '.*b.jsonl': 'text' is a number, not a string; fix that record"):
        _prepare(tmp_path, tmp_path / "b.jsonl")


def test_a_line_that_is_not_json_names_its_line(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"\n')
    with pytest.raises(UserError, match=r"^Line 4 of '.*a.jsonl' is not JSON \(.*\); fix or remove that line"):
        _prepare(tmp_path, tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text('["a list"]\n')
    with pytest.raises(UserError, match=r"^Line 1 of '.*b.jsonl' is a JSON a list, not an object"):
        _prepare(tmp_path, tmp_path / "b.jsonl")


@pytest.mark.parametrize("fmt", ["jsonl.gz", "jsonl.zst", "parquet"])
def test_a_truncated_file_is_refused(fmt, tmp_path):
    many = RECORDS * 20
    path = write_records(many, tmp_path / "a", fmt, rows_per_group=100)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    expected = (r"^The file '.*a.parquet' is not a complete Parquet file .*; it may be truncated or damaged: download "
                r"or write it again\.$" if fmt == "parquet" else
                r"^The file '.*a.jsonl.(gz|zst)' is truncated or damaged after line \d+ \(.*\); download or write it "
                r"again\.$")
    with pytest.raises(UserError, match=expected):
        _prepare(tmp_path, path)
    assert _nothing_left(tmp_path)


def test_a_glob_matching_nothing_and_an_unsupported_extension(tmp_path):
    with pytest.raises(UserError, match=r"^The glob '.*nothing/\*.parquet' matches no file \(looked in '.*nothing'\); "
                                        r"fix --data.train_files\.$"):
        _prepare(tmp_path, tmp_path / "nothing" / "*.parquet")
    (tmp_path / "a.csv").write_text("text\nhello\n")
    with pytest.raises(UserError, match=r"^The corpus file '.*a.csv' has the extension .csv, which is not read; the "
                                        r"supported inputs are .txt \(or any plain text file\), .bin token files, "
                                        r".jsonl, .jsonl.gz, .jsonl.zst, .parquet, .arrow"):
        _prepare(tmp_path, tmp_path / "a.csv")
    (tmp_path / "b.json").write_text('{"text": "a"}\n')
    with pytest.raises(UserError, match=r"extension .json, which is not read \(a file of one JSON object per line is "
                                        r"read when named .jsonl\)"):
        _prepare(tmp_path, tmp_path / "b.json")


def test_a_dataset_dict_folder_names_its_splits(tmp_path):
    folder = tmp_path / "dd"
    write_records(RECORDS, tmp_path / "dd_train", "dataset")
    folder.mkdir()
    (tmp_path / "dd_train").rename(folder / "train")
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(UserError, match=r"^The folder '.*dd' holds a DatasetDict with the splits train, test; pass one "
                                        r"split's folder, e.g. --data.train_files '\[.*dd/train\]'\.$"):
        _prepare(tmp_path, folder)
    assert _prepare(tmp_path, folder / "train").manifest.splits["train"][0].source.records == len(RECORDS)


def test_an_empty_source_and_bad_source_settings(tmp_path):
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    with pytest.raises(UserError, match=r"^The training corpus holds no text \(1 files, no record with any text\); "
                                        r"give it files with text in them\.$"):
        _prepare(tmp_path, tmp_path / "empty.parquet")
    assert _nothing_left(tmp_path)
    with pytest.raises(UserError, match=r"^Invalid data.sources: source 1 \('web'\) has weight 0 \(a weight must be a "
                                        r"number > 0\); two sources are named 'web' \(names must differ\); source 3 "
                                        r"needs a name of letters, digits, '-', '_' or '.' \(got 'a b'\); fix these "
                                        r"entries\.$"):
        TextDataModule(sources=[{"name": "web", "files": ["a"], "weight": 0}, {"name": "web", "files": ["b"]},
                                {"name": "a b", "files": ["c"]}])
    with pytest.raises(UserError, match=r"give data.sources or data.train_files / data.val_files, not both"):
        TextDataModule(train_files=["a.txt"], sources=[{"name": "web", "files": ["a"]}])
    with pytest.raises(UserError, match=r"^data.sources: unknown key 'wieght' in"):
        TextDataModule(sources=[{"name": "web", "files": ["a"], "wieght": 2}])


@pytest.mark.parametrize("fmt, module, package", [("parquet", "pyarrow.parquet", "pyarrow"),
                                                  ("jsonl.zst", "zstandard", "zstandard")])
def test_a_format_without_its_extra_names_the_install_line(fmt, module, package, tmp_path, monkeypatch):
    path = write_records(RECORDS, tmp_path / "records", fmt)
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(UserError, match=rf"^Reading '.*records.{fmt}' needs {package}, which is not installed; "
                                        rf"pip install 'llm_lit\[formats\]' \(or pip install {package}\)\.$"):
        _prepare(tmp_path, path)
    assert _nothing_left(tmp_path)


def test_a_url_without_the_remote_extra_names_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"^Reading 's3://bucket/data/\*.parquet' needs fsspec, which is not installed; "
                                        r"pip install 'llm_lit\[remote\]'\.$"):
        _prepare(tmp_path, "s3://bucket/data/*.parquet")


def test_a_record_file_that_changes_while_it_is_encoded_is_refused(tmp_path, monkeypatch):
    path = write_records(RECORDS * 5, tmp_path / "a", "jsonl")
    real = records_module.JsonlReader.batches

    def batches_and_append(self, raw, limit=None):
        for i, batch in enumerate(real(self, raw, limit)):
            if i == 0 and limit is None:
                with open(path, "ab") as f:
                    f.write(jsonl_bytes(["more"]))
            yield batch

    monkeypatch.setattr(records_module.JsonlReader, "batches", batches_and_append)
    monkeypatch.setattr(records_module, "JSONL_BATCH_BYTES", 2_000)
    with pytest.raises(UserError, match=r"^A corpus file changed while the token cache was being built \(.*a.jsonl "
                                        r"changed while it was being encoded.*\); run again once nothing is writing"):
        _prepare(tmp_path, path)
    assert _nothing_left(tmp_path)


def test_a_bad_record_in_the_second_file_leaves_no_shard_of_the_first(tmp_path):
    good = write_records(RECORDS, tmp_path / "a", "jsonl.gz")
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes(RECORDS[:50]) + b'{"text": 5}\n')
    with pytest.raises(UserError, match=r"Line 51 of '.*b.jsonl'"):
        _prepare(tmp_path, good, tmp_path / "b.jsonl")
    assert _nothing_left(tmp_path)


def test_a_bad_record_is_one_line_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(RECORDS) + b'{"content": "x"}\n')
    code = main(["fit", "--config", str(DEBUG_CONFIG), "--data.train_files", "[a.jsonl]", "--trainer.max_steps", "2",
                 "--model.optimizer.warmup_steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"error: Line {len(RECORDS) + 1} of '") and "has no key 'text' (its keys: content)" in err[-1]
