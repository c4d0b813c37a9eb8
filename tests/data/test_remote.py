"""Object storage through fsspec, against moto's standalone S3 server on 127.0.0.1 (started and stopped
here, never a real bucket): remote JSONL, Parquet and text give the ids of the same local files, a warm
start lists each glob once and downloads nothing (counted by the server), a changed object is read again,
and missing credentials or a missing bucket are one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from cli_helpers import REPO, cli_env, free_port
from format_helpers import EOT, paragraphs, write_records
from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache
from llm_lit.errors import UserError

pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[test]')")

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")
RECORDS = paragraphs(TEXT[:100_000])
BUCKET = "llm-lit-corpus"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server in its own process on a free port, recording the requests it serves (to a file in a
    temporary folder)."""
    port = free_port()
    recording = tmp_path_factory.mktemp("moto") / "recording"
    env = dict(os.environ, MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=str(recording))
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the moto server did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def s3(s3_server, monkeypatch, tmp_path):
    """Credentials and endpoint of the local server in the environment, and a bucket holding the records as
    data/a.parquet, data/b.jsonl.zst and text/c.txt (local copies in tmp_path/local)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": s3_server, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    local = tmp_path / "local"
    local.mkdir()
    files = [write_records(RECORDS[:200], local / "a", "parquet"), write_records(RECORDS[200:], local / "b", "jsonl.zst")]
    (local / "c.txt").write_text(TEXT[100_000:160_000], encoding="utf-8")
    for f in files:
        fs.put(str(f), f"{BUCKET}/data/{f.name}")
    fs.put(str(local / "c.txt"), f"{BUCKET}/text/c.txt")
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


def _recording(server: str, action: str) -> str:
    method = "GET" if action == "download-recording" else "POST"
    with urllib.request.urlopen(urllib.request.Request(f"{server}/moto-api/recorder/{action}", method=method)) as r:
        return r.read().decode()


def _requests(server: str) -> list[tuple[str, str]]:
    """(method, url) of each request the server served since recording started."""
    lines = [json.loads(line) for line in _recording(server, "download-recording").splitlines() if line.strip()]
    return [(line["method"], line["url"]) for line in lines if "/moto-api/" not in line["url"]]


def _ids(cache, split):
    return np.asarray(cache.split(split), dtype=np.int64).tolist()


def test_remote_files_give_the_ids_of_the_same_local_files(s3, tmp_path):
    local = tmp_path / "local"
    remote = prepare_token_cache([f"s3://{BUCKET}/data/*", f"s3://{BUCKET}/text/c.txt"], None, 0.1, 300, [EOT],
                                 tmp_path / "cache", num_proc=2)
    here = prepare_token_cache([str(local / "a.parquet"), str(local / "b.jsonl.zst"), str(local / "c.txt")], None,
                               0.1, 300, [EOT], tmp_path / "cache", num_proc=2)
    for split in ("train", "val"):
        assert _ids(remote, split) == _ids(here, split)
    sources = [s.source for s in remote.manifest.splits["train"]]
    assert [s.path for s in sources] == [f"s3://{BUCKET}/data/a.parquet", f"s3://{BUCKET}/data/b.jsonl.zst",
                                         f"s3://{BUCKET}/text/c.txt"]
    assert all(s.version and s.size for s in sources)  # the ETag and size, for the warm start


def test_a_warm_start_lists_each_glob_once_and_downloads_nothing(s3, s3_server, tmp_path):
    args = [sys.executable, "-m", "llm_lit", "prepare", "--config", str(REPO / "configs" / "debug.yaml"),
            "--data.train_files", f"[s3://{BUCKET}/data/*, s3://{BUCKET}/text/c.txt]",
            "--data.cache_dir", str(tmp_path / "cache")]
    env = {**cli_env(), **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                                       "AWS_DEFAULT_REGION")}}
    cold = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert cold.returncode == 0, cold.stderr[-3000:]
    _recording(s3_server, "reset-recording")
    _recording(s3_server, "start-recording")
    warm = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    _recording(s3_server, "stop-recording")
    assert warm.returncode == 0, warm.stderr[-3000:]
    assert "cached" in warm.stdout and "building" not in warm.stderr
    served = _requests(s3_server)
    listings = [u for m, u in served if m == "GET" and "list-type" in u]
    downloads = [u for m, u in served if m == "GET" and "list-type" not in u]
    assert downloads == [], served  # 0 bytes downloaded
    assert len(listings) == 1, served  # one listing for the one glob
    assert [m for m, _ in served if m not in ("GET", "HEAD")] == []
    assert len([u for m, u in served if m == "HEAD"]) <= 1  # the one plain URL's metadata


def test_a_changed_object_is_read_again_and_only_it(s3, tmp_path, capsys):
    first = prepare_token_cache([f"s3://{BUCKET}/data/*"], None, 0.1, 300, [EOT], tmp_path / "cache", num_proc=1,
                                progress=True)
    capsys.readouterr()
    write_records(RECORDS[200:] + ["one more record"], tmp_path / "b2", "jsonl.zst")
    s3.put(str(tmp_path / "b2.jsonl.zst"), f"{BUCKET}/data/b.jsonl.zst")
    second = prepare_token_cache([f"s3://{BUCKET}/data/*"], None, 0.1, 300, [EOT], tmp_path / "cache", num_proc=1,
                                 progress=True)
    err = capsys.readouterr().err
    assert "1 of 2 documents to encode" in err and f"s3://{BUCKET}/data/b.jsonl.zst changed; re-encoding" in err
    assert second.manifest.splits["train"][0].file == first.manifest.splits["train"][0].file
    assert second.manifest.splits["val"][0].source.records == len(RECORDS) - 200 + 1


def test_missing_credentials_and_a_missing_bucket_are_one_sentence(s3, tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"^The bucket 'no-such-bucket' of 's3://no-such-bucket/\*.parquet' does not "
                                        r"exist; check the URL"):
        prepare_token_cache(["s3://no-such-bucket/*.parquet"], None, 0.1, 300, [EOT], tmp_path / "cache")
    with pytest.raises(UserError, match=rf"^'s3://{BUCKET}/data/none.parquet' does not exist; check the URL\.$"):
        prepare_token_cache([f"s3://{BUCKET}/data/none.parquet"], None, 0.1, 300, [EOT], tmp_path / "cache")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(UserError, match=rf"^No credentials were found to read 's3://{BUCKET}/data/\*'; set "
                                        r"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        prepare_token_cache([f"s3://{BUCKET}/data/*"], None, 0.1, 300, [EOT], tmp_path / "cache")
