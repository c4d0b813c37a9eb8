"""`llm_lit prepare` builds the token cache of fit's settings without training and prints a table per
source; a `fit` with the same settings then starts warm, reading no byte of the corpus."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import DEBUG_CONFIG
from format_helpers import make_unreadable, paragraphs, write_records
from llm_lit.commands.cli import main
from llm_lit.data.tokens import BUNDLED_CORPUS

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")


def _corpus(tmp_path) -> list[Path]:
    records = paragraphs(TEXT[:300_000])
    files = [write_records(records[:1000], tmp_path / "web", "parquet"),
             write_records(records[1000:], tmp_path / "code", "jsonl.zst")]
    (tmp_path / "books.txt").write_text(TEXT[300_000:500_000], encoding="utf-8")
    return files + [tmp_path / "books.txt"]


def test_prepare_prints_a_table_per_source_and_a_second_run_is_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    web, code, books = _corpus(tmp_path)
    (tmp_path / "mix.yaml").write_text(f"""data:
  sources:
    - {{name: web, files: [{web}], weight: 0.6}}
    - {{name: code, files: ['{tmp_path}/*.jsonl.zst'], weight: 0.3}}
    - {{name: books, files: [{books}], weight: 0.1, val_fraction: 0.2}}
""")
    args = ["prepare", "--config", str(DEBUG_CONFIG), "--config", "mix.yaml", "--data.num_proc", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("source"))
    assert out[header].split() == ["source", "files", "documents", "MB", "text", "tokens", "bytes/token", "MB/s", "time"]
    rows = {line.split()[0]: line.split() for line in out[header + 1:header + 4]}
    assert list(rows) == ["web", "code", "books"]
    assert rows["web"][1:3] == ["1", "1,000"] and rows["books"][1:3] == ["1", "1"]
    assert all(row[-1] == "s" for row in rows.values())  # encoded now: "<seconds> s"
    assert main(args) == 0
    again = capsys.readouterr()
    assert "building" not in again.err and again.out.count("cached") == 3


def test_prepare_then_fit_reads_no_source_byte(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    files = _corpus(tmp_path)
    data = ["--data.train_files", "[" + ",".join(map(str, files)) + "]"]
    assert main(["prepare", "--config", str(DEBUG_CONFIG), *data]) == 0
    assert "corpus" in capsys.readouterr().out
    make_unreadable(monkeypatch, files)
    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "ParquetFile", None)  # pyarrow opens files itself: it must not be asked to
    fit = ["fit", "--config", str(DEBUG_CONFIG), *data, "--trainer.max_steps", "2", "--model.optimizer.warmup_steps",
           "1", "--trainer.limit_val_batches", "1", "--trainer.logger", "false", "--trainer.callbacks", "[]",
           "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
           "--model.sample_prompts", "[]"]
    assert main(fit) == 0
    assert "token cache" not in capsys.readouterr().err  # nothing was built
