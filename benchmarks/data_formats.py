"""Benchmark: corpora as the field publishes them (Parquet, JSONL.zst, mixtures, object storage), ours vs
the reference path, in one run.

    python benchmarks/data_formats.py --data-dir DIR             # the figures (DIR holds enwiki_train.txt and
                                                                  # gutenberg_train.txt; about 30 minutes here)
    python benchmarks/data_formats.py --big-mb 20 --small-mb 4 --repeats 1   # a quick check on the bundled corpus

It writes its inputs into a scratch folder (`--workdir`, default a temporary one, never the repository):
the paragraphs of enwiki_train and gutenberg_train (blocks between blank lines) as records, in Parquet and
in JSONL.zst, plus the `.txt` they are equivalent to (the same paragraphs joined by `<|endoftext|>`); and
corpora of copies of those records as Parquet files, `--small-mb` and `--big-mb` of text. Without
`--data-dir` the bundled tinyshakespeare stands in for both texts. Every section prints ours, the
reference and the ratio (medians of alternating repeats):

* throughput: MB/s of text of `prepare_token_cache` (tokenizer given, every core) on the Parquet and the
  JSONL.zst records vs on the equivalent `.txt`; ids equal.
* memory: peak RSS of `llm_lit prepare` (its largest process; tokenizer trained on the usual sample) on the
  big Parquet corpus vs the small one.
* mixture: each source's share of tokens over 10,000 training windows of a 3-source mixture (weights
  0.6 / 0.3 / 0.1) vs its weight; the windows of a resumed stream and of two DDP ranks vs one process.
* encode: MB/s of `write_token_file` on enwiki_train with 2 processes vs 1; ids identical.
* warm: `llm_lit prepare` start to exit on the built cache of the big Parquet corpus vs tinyshakespeare's,
  same vocabulary.
* s3: a cold and a warm `llm_lit prepare` from moto's S3 server on 127.0.0.1 (small Parquet corpus): the
  requests the server served on the warm start (listings, object reads, bytes sent).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from llm_lit.data.tokens import BUNDLED_CORPUS, prepare_token_cache  # noqa: E402

EOT = "<|endoftext|>"
SECTIONS = ("throughput", "memory", "mixture", "encode", "warm", "s3")
TEXTS = ("enwiki_train.txt", "gutenberg_train.txt")
ROWS_PER_GROUP = 2_000

# Runs a command as the child of a small interpreter; prints its wall time and the largest resident set
# of any process in its tree (RUSAGE_CHILDREN's maxrss, in MB).
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "peak_mb": usage.ru_maxrss / 1024}))
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of enwiki_train.txt and gutenberg_train.txt (default: the bundled corpus for both)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--big-mb", type=float, default=1000.0, help="text in the big Parquet corpus")
    p.add_argument("--small-mb", type=float, default=100.0, help="text in the small Parquet corpus")
    p.add_argument("--vocab-size", type=int, default=8192, help="tokenizer of the throughput, memory and warm sections")
    p.add_argument("--encode-vocab", type=int, default=10_000, help="tokenizer of the encode section")
    p.add_argument("--processes", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of each timing (medians)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    return p.parse_args()


def row(name: str, ours: float, reference: float, unit: str, note: str = "") -> None:
    ratio = ours / reference if reference else float("nan")
    print(f"  {name:46s} ours {ours:10.3f} {unit:5s} reference {reference:10.3f} {unit:5s} ratio {ratio:6.3f}  {note}",
          flush=True)


# ---------------------------------------------------------------------- inputs
def source_texts(data_dir: Path | None) -> dict[str, str]:
    """The two corpora's text (the bundled corpus for both without a data folder)."""
    if data_dir is None:
        text = BUNDLED_CORPUS.read_text(encoding="utf-8")
        return {name: text for name in TEXTS}
    return {name: (data_dir / name).read_text(encoding="utf-8") for name in TEXTS}


def paragraphs(text: str) -> list[str]:
    """Blocks between blank lines: one record each."""
    return [p for p in text.split("\n\n") if p.strip()]


def write_parquet(records: list[str], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        pq.write_table(pa.table({"text": records}), path, row_group_size=ROWS_PER_GROUP)
    return path


def write_jsonl_zst(records: list[str], path: Path) -> Path:
    import zstandard

    if not path.exists():
        with open(path, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as out:
            for record in records:
                out.write((json.dumps({"text": record}) + "\n").encode("utf-8"))
    return path


def formats_of(records: list[str], folder: Path, stem: str) -> dict[str, Path]:
    """The records as `.txt` (joined by EOT), Parquet and JSONL.zst."""
    folder.mkdir(parents=True, exist_ok=True)
    txt = folder / f"{stem}.txt"
    if not txt.exists():
        txt.write_text(EOT.join(records), encoding="utf-8")
    return {"txt": txt, "parquet": write_parquet(records, folder / f"{stem}.parquet"),
            "jsonl.zst": write_jsonl_zst(records, folder / f"{stem}.jsonl.zst")}


def copies_corpus(records: list[str], folder: Path, size_mb: float) -> list[Path]:
    """Parquet files of copies of `records` (one copy per file, the last cut short) until `size_mb` of text."""
    folder.mkdir(parents=True, exist_ok=True)
    left, files = int(size_mb * 1e6), []
    while left > 0:
        take, size = [], 0
        for r in records:
            if size >= left:
                break
            take.append(r)
            size += len(r.encode("utf-8"))
        files.append(write_parquet(take, folder / f"part-{len(files):04d}.parquet"))
        left -= size
    return files


def trained_tokenizer(files: list[Path], vocab_size: int, folder: Path):
    """A tokenizer trained (once, cached in `folder`) on the text files."""
    from tokenizer import Tokenizer

    cache = prepare_token_cache([str(f) for f in files], None, 0.1, vocab_size, [EOT], folder / "tokenizer-cache")
    return Tokenizer.load(cache.tokenizer_path)


# ---------------------------------------------------------------------- sections
def section_throughput(args, work: Path, records: list[str]) -> None:
    records, held_out = records[:-200], records[-200:]  # the validation file, the same for every format
    paths = formats_of(records, work / "formats", "enwiki+gutenberg")
    val = work / "formats" / "val.txt"
    val.write_text(EOT.join(held_out), encoding="utf-8")
    tok = trained_tokenizer([paths["txt"]], args.vocab_size, work)
    text_mb = sum(len(r.encode("utf-8")) for r in records) / 1e6
    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}  # CPU seconds of all processes
    ids: dict[str, list[int]] = {}
    for r in range(args.repeats):
        for name in (list(paths) if r % 2 == 0 else list(reversed(paths))):
            cache = work / f"throughput-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            before = cpu_seconds()
            start = time.perf_counter()
            built = prepare_token_cache([str(paths[name])], [str(val)], 0.1, args.vocab_size, [EOT], cache,
                                        tokenizer=tok, num_proc=args.processes)
            rates[name].append(text_mb / (time.perf_counter() - start))
            cpu[name].append(sum(b - a for a, b in zip(before, cpu_seconds())))
            ids[name] = np.asarray(built.split("train")).tolist()
    cores = args.processes or os.cpu_count()
    print(f"\n[throughput] prepare (tokenizer given, {cores} processes) of {text_mb:.1f} MB of text in "
          f"{len(records):,} records, MB/s of text, median of {args.repeats}:")
    for name in ("parquet", "jsonl.zst"):
        row(f"{name} vs the same text as .txt", statistics.median(rates[name]), statistics.median(rates["txt"]), "MB/s",
            note="(target >= 0.9)")
    print(f"  ids equal to the .txt path: {ids['parquet'] == ids['txt'] == ids['jsonl.zst']}")
    print("  CPU seconds of all processes (steadier than wall time on a busy machine), .txt vs ours: "
          + ", ".join(f"{name} {statistics.median(cpu['txt']):.1f} vs {statistics.median(cpu[name]):.1f} "
                      f"({statistics.median(cpu['txt']) / statistics.median(cpu[name]):.3f})"
                      for name in ("parquet", "jsonl.zst")))


def measured(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cmd)], capture_output=True, text=True,
                         check=True, env=env()).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return result


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    e.pop("LLM_LIT_DEBUG", None)
    return e


def prepare_cmd(files: list[Path] | str, cache: Path, vocab_size: int, processes: int | None) -> list[str]:
    listed = files if isinstance(files, str) else "[" + ",".join(map(str, files)) + "]"
    cmd = [sys.executable, "-m", "llm_lit", "prepare", "--config", str(REPO / "configs" / "debug.yaml"),
           "--data.train_files", listed, "--data.vocab_size", str(vocab_size), "--data.cache_dir", str(cache)]
    return cmd + (["--data.num_proc", str(processes)] if processes else [])


def section_memory(args, work: Path, small: list[Path], big: list[Path]) -> None:
    peaks = {}
    for name, files in (("small", small), ("big", big)):
        cache = work / f"memory-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        peaks[name] = measured(prepare_cmd(files, cache, args.vocab_size, args.processes))
    print(f"\n[memory] llm_lit prepare of Parquet copies (tokenizer trained on its sample), peak RSS of the largest "
          "process:")
    row(f"{args.big_mb:.0f} MB vs {args.small_mb:.0f} MB of text", peaks["big"]["peak_mb"], peaks["small"]["peak_mb"],
        "MB", note=f"(target: ratio <= 1.2 and ours <= 1024 MB; {peaks['big']['seconds']:.0f} s vs "
                   f"{peaks['small']['seconds']:.0f} s)")


def section_mixture(args, work: Path, texts: dict[str, str]) -> None:
    from llm_lit.data import TextDataModule
    from llm_lit.data.datasets import MixtureWindows

    folder = work / "mixture"
    web = formats_of(paragraphs(texts[TEXTS[0]]), folder, "web")["parquet"]
    books = formats_of(paragraphs(texts[TEXTS[1]]), folder, "books")["jsonl.zst"]
    weights = [0.6, 0.3, 0.1]
    sources = [{"name": "web", "files": [str(web)], "weight": weights[0]},
               {"name": "books", "files": [str(books)], "weight": weights[1]},
               {"name": "shakespeare", "files": [str(BUNDLED_CORPUS)], "weight": weights[2]}]
    dm = TextDataModule(sources=sources, vocab_size=args.vocab_size, context_length=256, batch_size=100,
                        cache_dir=str(folder / "cache"), num_proc=args.processes)
    dm.prepare_data()
    dm.setup("fit")
    windows = dm.train_dataloader().dataset
    picks = np.concatenate([windows.batch_sources(i) for i in range(100)])  # 10,000 windows of 256 tokens
    shares = np.bincount(picks, minlength=3) / len(picks)
    print("\n[mixture] share of tokens over 10,000 training windows (256 tokens each) vs the weight:")
    for name, share, weight in zip(dm.source_names, shares, weights):
        row(f"{name}", share, weight, "", note="(target: within 0.01 of the weight)")
    resumed = MixtureWindows(dm.train_splits, weights, 256, 100, seed=dm.seed, start_batch=50)
    same_resume = all(np.array_equal(resumed.batch(i)[0], windows.batch(i)[0]) for i in range(50, 60))
    ranks = [MixtureWindows(dm.train_splits, weights, 256, 50, seed=dm.seed, rank=r, world_size=2) for r in (0, 1)]
    same_ddp = all(np.array_equal(np.concatenate([ranks[0].batch(i)[0], ranks[1].batch(i)[0]]), windows.batch(i)[0])
                   for i in range(10))
    print(f"  a stream resumed at micro-batch 50 gives the same windows: {same_resume}; two DDP ranks of batch 50 "
          f"give one process's windows of batch 100: {same_ddp} (end to end: tests/faults, tests/training)")


def section_encode(args, work: Path, texts: dict[str, str]) -> None:
    from tokenizer import Tokenizer, train_bpe
    from tokenizer.token_file import read_token_file, write_token_file

    corpus = work / "encode" / TEXTS[0]
    corpus.parent.mkdir(parents=True, exist_ok=True)
    if not corpus.exists():
        corpus.write_text(texts[TEXTS[0]], encoding="utf-8")
    vocab, merges = train_bpe(corpus, args.encode_vocab, [EOT])
    processes = args.processes or 2
    rate: dict[int, list[float]] = {1: [], processes: []}
    cpu: dict[int, list[tuple[float, float]]] = {1: [], processes: []}  # (this process, its workers) seconds
    for r in range(max(args.repeats, 3)):
        for p in ((1, processes) if r % 2 == 0 else (processes, 1)):
            tok = Tokenizer(vocab, merges, [EOT])  # a fresh one: its pre-token cache starts cold, as in a new run
            before = cpu_seconds()
            start = time.perf_counter()
            write_token_file(tok, corpus, work / "encode" / f"p{p}.bin", processes=p)
            rate[p].append(corpus.stat().st_size / 1e6 / (time.perf_counter() - start))
            cpu[p].append(tuple(b - a for a, b in zip(before, cpu_seconds())))
    same = read_token_file(work / "encode" / "p1.bin").tolist() == \
        read_token_file(work / "encode" / f"p{processes}.bin").tolist()
    print(f"\n[encode] write_token_file on {TEXTS[0]} ({corpus.stat().st_size / 1e6:.1f} MB, vocab "
          f"{args.encode_vocab:,}), median of {len(rate[1])}:")
    row(f"{processes} processes vs 1", statistics.median(rate[processes]), statistics.median(rate[1]), "MB/s",
        note=f"(target >= 1.8)  runs: {' / '.join(f'{a:.1f} vs {b:.1f}' for a, b in zip(rate[processes], rate[1]))}")
    print(f"  ids identical: {same}")
    here, workers = (statistics.median(c[i] for c in cpu[processes]) for i in (0, 1))
    alone = statistics.median(c[0] for c in cpu[1])
    print(f"  CPU seconds: 1 process {alone:.2f}; {processes} processes {here:.2f} here + {workers:.2f} in workers "
          f"(on idle cores the wall time is about the busiest process's: {alone / max(here, workers / (processes - 1)):.2f}x)")


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process, and by its children that have ended."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def section_warm(args, work: Path, big: list[Path]) -> None:
    caches = {"big": work / "warm-big", "tiny": work / "warm-tiny"}
    inputs = {"big": big, "tiny": [BUNDLED_CORPUS]}
    for name in caches:
        measured(prepare_cmd(inputs[name], caches[name], args.vocab_size, args.processes))  # builds (or finds) it
    times: dict[str, list[float]] = {"big": [], "tiny": []}
    for r in range(args.repeats):
        for name in (("big", "tiny") if r % 2 == 0 else ("tiny", "big")):
            times[name].append(measured(prepare_cmd(inputs[name], caches[name], args.vocab_size,
                                                    args.processes))["seconds"])
    size = sum(f.stat().st_size for f in big) / 1e6
    print(f"\n[warm] llm_lit prepare on a built cache, start to exit (vocab {args.vocab_size:,}), median of "
          f"{args.repeats}:")
    row(f"{len(big)} Parquet files ({size:.0f} MB) vs tinyshakespeare", statistics.median(times["big"]),
        statistics.median(times["tiny"]), "s", note="(target <= 1.2)")


def section_s3(args, work: Path, small: list[Path]) -> None:
    try:
        import s3fs
    except ImportError:
        print("\n[s3] skipped: s3fs and moto[server] are not installed (pip install -e '.[test]').")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=dict(os.environ, MOTO_ENABLE_RECORDING="True",
                                       MOTO_RECORDER_FILEPATH=str(work / "moto-recording")), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": url,
            "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(keys)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        fs = s3fs.S3FileSystem()
        fs.mkdir("corpus")
        for f in small:
            fs.put(str(f), f"corpus/parquet/{f.name}")
        cmd = prepare_cmd("[s3://corpus/parquet/*.parquet]", work / "s3-cache", args.vocab_size, args.processes)
        cold = measured(cmd)
        moto(url, "reset-recording")
        moto(url, "start-recording")
        warm = measured(cmd)
        moto(url, "stop-recording")
        served = [json.loads(line) for line in moto(url, "download-recording").splitlines() if line.strip()]
        served = [r for r in served if "/moto-api/" not in r["url"]]
        listings = [r for r in served if r["method"] == "GET" and "list-type" in r["url"]]
        reads = [r for r in served if r["method"] == "GET" and "list-type" not in r["url"]]
        size = sum(f.stat().st_size for f in small) / 1e6
        print(f"\n[s3] llm_lit prepare from moto's S3 server on 127.0.0.1, {len(small)} Parquet objects ({size:.0f} MB):")
        row("warm vs cold start, start to exit", warm["seconds"], cold["seconds"], "s")
        print(f"  warm start: {len(served)} requests served: {len(listings)} listing (one glob), {len(reads)} object "
              f"reads, 0 bytes downloaded: {not reads}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def moto(url: str, action: str) -> str:
    request = urllib.request.Request(f"{url}/moto-api/recorder/{action}",
                                     method="GET" if action == "download-recording" else "POST")
    with urllib.request.urlopen(request) as r:
        return r.read().decode()


def main() -> None:
    args = parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; pick from {', '.join(SECTIONS)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="llm_lit-data-formats-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        texts = source_texts(args.data_dir)
        records = [r for name in TEXTS for r in paragraphs(texts[name])]
        print(f"inputs in {work}: {len(records):,} records of {sum(len(r) for r in records) / 1e6:.1f} MB "
              f"({'bundled corpus' if args.data_dir is None else ', '.join(TEXTS)}), {os.cpu_count()} cores")
        needs_corpora = {"memory", "warm", "s3"} & set(sections)
        small = copies_corpus(records, work / "small", args.small_mb) if needs_corpora else []
        big = copies_corpus(records, work / "big", args.big_mb) if {"memory", "warm"} & set(sections) else []
        if "throughput" in sections:
            section_throughput(args, work, records)
        if "memory" in sections:
            section_memory(args, work, small, big)
        if "mixture" in sections:
            section_mixture(args, work, texts)
        if "encode" in sections:
            section_encode(args, work, texts)
        if "warm" in sections:
            section_warm(args, work, big)
        if "s3" in sections:
            section_s3(args, work, small)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
