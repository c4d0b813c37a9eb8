"""Benchmark: the data path at scale, ours vs a reference, in one run.

    python benchmarks/data_scale.py --data-dir path/to/corpora   # the figures of docs/results.md (about 15 minutes here)
    python benchmarks/data_scale.py --size-mb 6 --small-mb 2 --vocab-size 1000 --encode-mb 2 --old-commit none

It builds a synthetic corpus in a temporary folder from the texts of `--data-dir` (the public
corpora of docs/results.md; the bundled tinyshakespeare.txt stands in for a file it lacks):
copies of gutenberg_train.txt and enwiki_train.txt, one file each, until `--size-mb` (983 MB =
14 copies of both), and a `--small-mb` one, then prints for each section ours, the reference
and the ratio:

* encode: MB/s of `write_token_file` with 1 and 2 processes vs tiktoken built from the
  same merges (`encode_ordinary`, and `encode_ordinary_batch` over exact 4 MiB blocks with
  one thread per core), file to file, ids identical; on enwiki_train (24 MB, the published
  figure) and on enwiki_train + gutenberg_train (70 MB of distinct text, where the fixed
  cost of starting workers matters less), each with a tokenizer trained on it.
* cold: `llm_lit fit` (debug config, 2 steps, `--data.vocab_size`) on the corpus with an
  empty cache, ours vs the code of `--old-commit` (a `git archive` copy, run the same
  way): wall time, peak resident memory of the process tree, largest temporary file.
  Ours also on the small corpus (peak memory should not grow with the corpus).
* warm: the same fit on the built cache, large corpus vs tinyshakespeare (start to exit).
* compression: bytes per token of the validation split, tokenizer trained on our sample
  vs on the whole training split (the old code's tokenizer, or one trained here).
* ddp: a two-process DDP fit on the warm cache: manifest reads and corpus bytes read by
  each rank's data path, ours vs the old code.
* sample (not in the default run; `--sections sample`): the measurement behind the default
  of `--data.tokenizer_sample_bytes`. Tokenizers of `--vocab-size` trained on evenly spread
  samples of `--sample-sweep` MB of the distinct text (gutenberg_train + enwiki_train, 70 MB)
  vs on all of it: training time, peak memory, and bytes per token on the held-out
  gutenberg_valid + enwiki_valid.

Every fit runs in a fresh process under a small wrapper that reports the peak RSS of
its process tree. Medians over `--repeats` for the timed sections.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from corpora import BUNDLED_DIR, add_data_dir_argument, corpus_file  # noqa: E402

DATA = BUNDLED_DIR  # --data-dir

import numpy as np  # noqa: E402

EOT = "<|endoftext|>"
SECTIONS = ("encode", "cold", "warm", "compression", "ddp", "sample")

# Runs a command as the child of a small fresh interpreter and prints its wall time, the CPU
# seconds of its process tree and the tree's peak RSS (children's maximum resident set, in MB).
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(json.loads(sys.argv[1]), cwd=sys.argv[2]).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_mb": usage.ru_maxrss / 1024}))
"""

# Runs `llm_lit` counting, per rank, reads of manifest.json and of the corpus files.
COUNT_READS = """
import atexit, builtins, json, os, sys
corpus = set(json.loads(os.environ["BENCH_CORPUS"]))
stats = {"manifest_reads": 0, "corpus_opens": 0, "corpus_bytes_read": 0}
real_open = builtins.open

class Counting:
    def __init__(self, f):
        self._f = f
    def read(self, *args):
        data = self._f.read(*args)
        stats["corpus_bytes_read"] += len(data)
        return data
    def readinto(self, b):
        n = self._f.readinto(b)
        stats["corpus_bytes_read"] += n or 0
        return n
    def __iter__(self):
        for line in self._f:
            stats["corpus_bytes_read"] += len(line)
            yield line
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

def counting_open(file, *args, **kwargs):
    f = real_open(file, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)):
        path = os.path.abspath(file)
        if path.endswith("manifest.json"):
            stats["manifest_reads"] += 1
        if path in corpus:
            stats["corpus_opens"] += 1
            return Counting(f)
    return f

builtins.open = counting_open

def report():
    rank = os.environ.get("LOCAL_RANK", "0")
    with real_open(os.path.join(os.environ["BENCH_OUT"], f"rank{rank}.json"), "w") as f:
        json.dump(stats, f)

atexit.register(report)
sys.path.insert(0, os.environ["BENCH_CODE"])
try:
    from llm_lit.commands.cli import main
except ImportError:  # the old code's layout (llm_lit/cli.py)
    from llm_lit.cli import main
sys.exit(main())
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=984.0, help="large corpus size (984: 14 x gutenberg+enwiki, 983.1 MB)")
    p.add_argument("--small-mb", type=float, default=100.0, help="small corpus size, for the memory comparison")
    p.add_argument("--vocab-size", type=int, default=32_768)
    p.add_argument("--encode-corpora", default="enwiki_train.txt;enwiki_train.txt+gutenberg_train.txt",
                   help="texts of the encode section, ';' between texts, '+' between the files joined into one "
                        "(names in --data-dir, or paths)")
    p.add_argument("--encode-mb", type=float, default=None, help="use only the first MB of each encode text")
    p.add_argument("--encode-vocab", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=2, help="processes of the parallel encode (and tiktoken threads)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the encode and warm-start timings")
    p.add_argument("--old-commit", default="114e25a", help="the reference code (a commit of this repo), or none")
    p.add_argument("--sections", default=",".join(SECTIONS[:-1]), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--sample-sweep", default="8,16,32,64", help="sample sizes (MB) of the sample section")
    p.add_argument("--workdir", default=None, help="keep corpora and caches here (default: a temporary folder)")
    add_data_dir_argument(p, "gutenberg_train/valid.txt and enwiki_train/valid.txt")
    return p.parse_args()


# ---------------------------------------------------------------------- corpus
def cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its finished child processes."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def build_corpus(folder: Path, size_mb: float) -> list[Path]:
    """Whole copies of gutenberg_train and enwiki_train, alternately, one file each, while they fit in `size_mb`;
    then the rest (if at least 1 MB) as the start of the next one, cut at a line."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [corpus_file(DATA, "gutenberg_train.txt"), corpus_file(DATA, "enwiki_train.txt")]
    left = int(size_mb * 1e6)
    files = []
    while left >= 1_000_000:
        src = sources[len(files) % 2]
        dst = folder / f"{len(files) // 2:03d}-{src.name}"
        data = src.read_bytes()
        if len(data) > left:
            data = data[:data.rfind(b"\n", 0, left) + 1]
        if not dst.exists() or dst.stat().st_size != len(data):
            dst.write_bytes(data)
        files.append(dst)
        left -= len(data)
    return files


# ---------------------------------------------------------------------- running fit
def fit_args(files: list[Path], cache: Path, vocab_size: int, config: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """A two-step fit of the debug config on `files`: tokenizer + encoding + 2 steps + one validation batch."""
    return ["fit", "--config", str(config), "--data.train_files", "[" + ",".join(map(str, files)) + "]",
            "--data.vocab_size", str(vocab_size), "--data.cache_dir", str(cache), "--trainer.max_steps", "2",
            "--model.optimizer.warmup_steps", "1", "--trainer.val_check_interval", "2",
            "--trainer.limit_val_batches", "1", "--trainer.logger", "false", "--trainer.callbacks", "[]",
            "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
            "--model.sample_prompts", "[]", *extra]


def code_env(code: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="2")
    env.pop("LLM_LIT_DEBUG", None)
    return env


class TempFileWatch:
    """Polls a folder tree while a command runs; the largest file seen that is gone at the end is a temporary one."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.sizes, self._stop = folder, {}, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "TempFileWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            for root, _, names in os.walk(self.folder):
                for name in names:
                    path = os.path.join(root, name)
                    try:
                        self.sizes[path] = max(self.sizes.get(path, 0), os.path.getsize(path))
                    except OSError:
                        pass

    def largest_temporary_mb(self) -> float:
        gone = [size for path, size in self.sizes.items() if not os.path.exists(path)]
        return max(gone, default=0) / 1e6


def measured_fit(code: Path, args: list[str], cwd: Path, watch: Path | None = None) -> dict:
    """Run `python -m llm_lit ARGS` with the code at `code`; wall time, peak RSS, largest temporary file."""
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "llm_lit", *args]
    watcher = TempFileWatch(watch) if watch is not None else None
    if watcher:
        watcher.__enter__()
    try:
        out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cmd), str(cwd)], env=code_env(code),
                             capture_output=True, text=True, check=True).stdout
    finally:
        if watcher:
            watcher.__exit__()
    result = json.loads(out.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"fit failed ({code}): {' '.join(args)}")
    result["temp_mb"] = watcher.largest_temporary_mb() if watcher else float("nan")
    return result


def old_code(commit: str, workdir: Path) -> Path | None:
    if commit.lower() == "none":
        return None
    folder = workdir / f"old-{commit}"
    if not (folder / "llm_lit").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def row(name: str, ours: float, reference: float, unit: str, ratio: float | None = None, note: str = "") -> None:
    ratio = ours / reference if ratio is None and reference else ratio
    print(f"  {name:44s} ours {ours:10.2f} {unit:5s} reference {reference:10.2f} {unit:5s} ratio "
          f"{ratio if ratio is not None else float('nan'):6.2f}  {note}")


# ---------------------------------------------------------------------- sections
def section_encode(args: argparse.Namespace, work: Path) -> None:
    for text in args.encode_corpora.split(";"):
        files = [Path(f) if os.sep in f else corpus_file(DATA, f) for f in text.split("+")]
        corpus = work / ("encode-" + "+".join(f.stem for f in files) + ".txt")
        data = b"".join(f.read_bytes() for f in files)
        if args.encode_mb:
            data = data[:int(args.encode_mb * 1e6)]
            data = data[:data.rfind(b"\n") + 1]
        corpus.write_bytes(data)
        encode_one(args, work, corpus)


def encode_one(args: argparse.Namespace, work: Path, corpus: Path) -> None:
    import tiktoken

    from tokenizer import Tokenizer, train_bpe
    from tokenizer.pretokenize import GPT2_PATTERN, chunk_boundaries
    from tokenizer.token_file import read_token_file, write_token_file

    vocab, merges = train_bpe(corpus, args.encode_vocab, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    specials = {s: tok.token_to_id(s) for s in tok.special_tokens}
    ranks = {t: i for i, t in tok.vocab.items() if i not in specials.values()}
    enc = tiktoken.Encoding(name="llm_lit", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    bounds = chunk_boundaries(corpus, 4 << 20, [EOT])
    mb = corpus.stat().st_size / 1e6

    def ours(processes: int) -> Path:
        out = work / f"ours{processes}.bin"
        write_token_file(Tokenizer(tok.vocab, tok.merges, tok.special_tokens), corpus, out, processes=processes)
        return out

    def tiktoken_single() -> Path:
        out = work / "tiktoken1.bin"
        text = corpus.read_bytes().decode("utf-8")
        np.array(enc.encode_ordinary(text), dtype=np.uint16).tofile(out)
        return out

    def tiktoken_batch() -> Path:
        out = work / "tiktoken_batch.bin"
        raw = corpus.read_bytes()
        texts = [raw[a:b].decode("utf-8") for a, b in zip(bounds, bounds[1:])]
        ids = enc.encode_ordinary_batch(texts, num_threads=args.processes)
        np.concatenate([np.array(i, dtype=np.uint16) for i in ids]).tofile(out)
        return out

    runs = {"ours, 1 process": lambda: ours(1), f"ours, {args.processes} processes": lambda: ours(args.processes),
            "tiktoken encode_ordinary": tiktoken_single,
            f"tiktoken encode_ordinary_batch, {args.processes} threads": tiktoken_batch}
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for r in range(args.repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            start, cpu_start = time.perf_counter(), cpu_seconds()
            outputs[name] = runs[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - cpu_start)
    rate = {name: mb / statistics.median(t) for name, t in times.items()}
    reference = [read_token_file(outputs["ours, 1 process"]).tolist()]
    identical = all(np.fromfile(path, dtype=np.uint16).tolist() == reference[0] for path in outputs.values())
    print(f"\n[encode] {corpus.name} ({mb:.1f} MB), vocab {tok.vocab_size:,}, file to file, median of {args.repeats}:")
    for name, value in rate.items():
        print(f"  {name:48s} {value:7.2f} MB/s  {statistics.median(cpu[name]):6.2f} CPU s   runs: "
              + " ".join(f"{mb / t:.2f}" for t in times[name]))
    best_name = max((n for n in rate if n.startswith("tiktoken")), key=rate.get)
    parallel = f"ours, {args.processes} processes"
    row(f"{args.processes} processes vs 1 process", rate[parallel], rate["ours, 1 process"], "MB/s",
        note="(target >= 1.8)")
    row(f"{args.processes} processes vs tiktoken's best", rate[parallel], rate[best_name], "MB/s",
        note=f"(target >= 0.8; best: {best_name})")
    print(f"  ids identical (ours 1 and {args.processes} processes, tiktoken single and batch): {identical}")
    one, many = statistics.median(cpu["ours, 1 process"]), statistics.median(cpu[parallel])
    print(f"  CPU seconds, {args.processes} processes vs 1 (workers' start-up and pre-token caches warmed once per "
          f"worker): {many:.2f} vs {one:.2f} = {many / one:.2f}x; on {args.processes} idle cores the speedup is at "
          f"most {args.processes * one / many:.2f}x")


def section_cold(args, work: Path, large: list[Path], small: list[Path], old: Path | None) -> dict:
    config = REPO / "configs" / "debug.yaml"
    results = {}
    for name, files in (("large", large), ("small", small)):
        cache = work / f"cache-ours-{name}"
        shutil.rmtree(cache, ignore_errors=True)
        results[f"ours-{name}"] = measured_fit(REPO, fit_args(files, cache, args.vocab_size, config),
                                               work / "run-ours", watch=cache)
    if old is not None:
        cache = work / "cache-old-large"
        shutil.rmtree(cache, ignore_errors=True)
        results["old-large"] = measured_fit(old, fit_args(large, cache, args.vocab_size, old / "configs" / "debug.yaml"),
                                            work / "run-old", watch=cache)
    size = sum(f.stat().st_size for f in large) / 1e6
    small_size = sum(f.stat().st_size for f in small) / 1e6
    ours, ours_small = results["ours-large"], results["ours-small"]
    print(f"\n[cold] fit (debug config, 2 steps, vocab {args.vocab_size:,}) with an empty cache, "
          f"{len(large)} files, {size:.0f} MB:")
    if "old-large" in results:
        ref = results["old-large"]
        row("wall time, ours vs old code", ours["seconds"], ref["seconds"], "s",
            ratio=ref["seconds"] / ours["seconds"], note="(old / ours; target >= 3)")
        row("CPU seconds of the process tree", ours["cpu_s"], ref["cpu_s"], "s",
            ratio=ref["cpu_s"] / ours["cpu_s"], note="(old / ours: the work, whatever else runs on the machine)")
        row("peak RSS of the process tree", ours["peak_mb"], ref["peak_mb"], "MB", note="(target: ours <= 1024)")
        row("largest temporary file", ours["temp_mb"], ref["temp_mb"], "MB")
    else:
        print(f"  ours: {ours['seconds']:.1f} s, peak RSS {ours['peak_mb']:.0f} MB, largest temporary file "
              f"{ours['temp_mb']:.2f} MB (no reference run: --old-commit none)")
    row(f"peak RSS, {size:.0f} MB vs {small_size:.0f} MB corpus", ours["peak_mb"], ours_small["peak_mb"], "MB",
        note="(target <= 1.2)")
    print(f"  ours on the small corpus: {ours_small['seconds']:.1f} s ({ours_small['cpu_s']:.1f} CPU s); "
          f"ours on the large one used {ours['cpu_s'] / ours['seconds']:.2f} cores on average")
    return results


#: vocab_size of the warm-start comparison's tinyshakespeare run (the most that corpus yields, rounded down).
TINY_VOCAB = 16384


def section_warm(args, work: Path, large: list[Path]) -> None:
    from llm_lit.data.tokens import BUNDLED_CORPUS

    config = REPO / "configs" / "debug.yaml"
    cache = work / "cache-ours-large"
    if not cache.exists():
        measured_fit(REPO, fit_args(large, cache, args.vocab_size, config), work / "run-ours")
    tiny_cache = work / "cache-ours-tiny"
    # tinyshakespeare yields about 20,000 ids, so a larger vocab_size is refused for it; the smaller vocabulary
    # only makes the tiny run's validation batch cheaper, i.e. the ratio below pessimistic
    vocab = {"large": args.vocab_size, "tiny": min(args.vocab_size, TINY_VOCAB)}
    measured_fit(REPO, fit_args([BUNDLED_CORPUS], tiny_cache, vocab["tiny"], config), work / "run-ours")  # builds
    times = {"large": [], "tiny": []}
    for r in range(args.repeats):
        for name in (("large", "tiny") if r % 2 == 0 else ("tiny", "large")):
            files, c = (large, cache) if name == "large" else ([BUNDLED_CORPUS], tiny_cache)
            times[name].append(measured_fit(REPO, fit_args(files, c, vocab[name], config), work / "run-ours")["seconds"])
    data_path = {name: statistics.median(data_path_seconds(files, c, vocab[name]) for _ in range(args.repeats))
                 for name, files, c in (("large", large, cache), ("tiny", [BUNDLED_CORPUS], tiny_cache))}
    size = sum(f.stat().st_size for f in large) / 1e6
    print(f"\n[warm] the same fit on a built cache, start to exit, median of {args.repeats}:")
    row("data path alone (prepare_data + setup)", data_path["large"] * 1e3, data_path["tiny"] * 1e3, "ms",
        note="(in this process: what grows with the number of files, not their size)")
    row(f"{size:.0f} MB corpus vs tinyshakespeare", statistics.median(times["large"]), statistics.median(times["tiny"]),
        "s", note="(target <= 1.2)   runs: " + " / ".join(f"{a:.1f} vs {b:.1f}" for a, b in zip(times["large"], times["tiny"])))


def data_path_seconds(files: list[Path], cache: Path, vocab_size: int) -> float:
    """Seconds of `prepare_data` + `setup("fit")` of a fresh TextDataModule on a built cache."""
    from llm_lit.data import TextDataModule

    start = time.perf_counter()
    dm = TextDataModule(train_files=[str(f) for f in files], vocab_size=vocab_size, context_length=32,
                        cache_dir=str(cache))
    dm.prepare_data()
    dm.setup("fit")
    return time.perf_counter() - start


def section_compression(args, work: Path, large: list[Path]) -> None:
    from llm_lit.data.manifest import read_manifest
    from tokenizer import Tokenizer
    from tokenizer.pretokenize import TextRange
    from tokenizer.token_file import encode_ranges
    from tokenizer.train import train_bpe_on_ranges

    (folder,) = [p for p in (work / "cache-ours-large").iterdir() if p.is_dir()]
    manifest = read_manifest(folder)
    val = manifest.splits["val"]
    val_bytes = sum(s.source.end - s.source.start for s in val) + len(EOT.encode()) * (len(val) - 1)
    ours_tokens = manifest.num_tokens("val")
    old_folders = [p for p in (work / "cache-old-large").glob("*") if (p / "val.bin.json").is_file()] \
        if (work / "cache-old-large").exists() else []
    if old_folders:
        ref_tokens = json.loads((old_folders[0] / "val.bin.json").read_text())["num_tokens"]
        ref_name = "the old code's tokenizer (trained on the whole training split)"
    else:  # train the whole-corpus tokenizer here and encode the validation documents with it
        train = [TextRange(s.source.path, s.source.start, s.source.end) for s in manifest.splits["train"]]
        vocab, merges = train_bpe_on_ranges(train, args.vocab_size, [EOT], args.processes)
        tok = Tokenizer(vocab, merges, [EOT])
        ranges = [TextRange(s.source.path, s.source.start, s.source.end) for s in val]
        outs = [work / f"whole-val-{i}.bin" for i in range(len(ranges))]
        ref_tokens = sum(sc["num_tokens"] for sc in encode_ranges(tok, ranges, outs, args.processes)) + len(val) - 1
        ref_name = "a tokenizer trained here on the whole training split"
    sample = manifest.tokenizer.get("trained_on_bytes", 0) / 1e6
    print(f"\n[compression] bytes per token of the validation split ({val_bytes / 1e6:.1f} MB), tokenizer trained on "
          f"a {sample:.1f} MB sample vs {ref_name}:")
    row("bytes per token", val_bytes / ours_tokens, val_bytes / ref_tokens, "B/tok", note="(target >= 0.99)")


def section_ddp(args, work: Path, large: list[Path], old: Path | None) -> None:
    config = REPO / "configs" / "debug.yaml"
    script = work / "count_reads.py"
    script.write_text(COUNT_READS)
    print("\n[ddp] a two-process DDP fit on the built cache: what each rank's data path reads")
    for name, code, cache in (("ours", REPO, work / "cache-ours-large"), ("old code", old, work / "cache-old-large")):
        if code is None or not cache.exists():
            continue
        out = work / f"ddp-{name.replace(' ', '_')}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        env = dict(code_env(code), BENCH_CORPUS=json.dumps([str(f) for f in large]), BENCH_OUT=str(out),
                   BENCH_CODE=str(code))
        cfg = config if code == REPO else code / "configs" / "debug.yaml"
        args_ = fit_args(large, cache, args.vocab_size, cfg, ("--trainer.devices", "2", "--trainer.strategy", "ddp"))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), *args_], cwd=out, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"error: the DDP fit of {name} failed:\n{proc.stderr[-3000:]}")
        seconds = time.perf_counter() - start
        ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
        reads = ", ".join(f"rank {i}: {r['manifest_reads']} manifest reads, {r['corpus_bytes_read'] / 1e6:,.1f} MB of "
                          f"corpus read ({r['corpus_opens']} opens)" for i, r in enumerate(ranks))
        print(f"  {name:9s} {seconds:6.1f} s   {reads}")


SAMPLE_TRAIN = """
import json, sys, time
from tokenizer import Tokenizer
from tokenizer.pretokenize import TextRange
from tokenizer.sample import sample_ranges
from tokenizer.train import train_bpe_on_ranges
files, sample_bytes, vocab_size, out, processes = json.loads(sys.argv[1])
ranges = sample_ranges([TextRange.whole(f) for f in files], sample_bytes, ["<|endoftext|>"])
vocab, merges = train_bpe_on_ranges(ranges, vocab_size, ["<|endoftext|>"], processes)
Tokenizer(vocab, merges, ["<|endoftext|>"]).save(out)
"""


def section_sample(args, work: Path) -> None:
    from tokenizer import Tokenizer

    train = [corpus_file(DATA, "gutenberg_train.txt"), corpus_file(DATA, "enwiki_train.txt")]
    held_out = [corpus_file(DATA, "gutenberg_valid.txt"), corpus_file(DATA, "enwiki_valid.txt")]
    total = sum(f.stat().st_size for f in train)
    texts = [f.read_text(encoding="utf-8") for f in held_out]
    held_bytes = sum(f.stat().st_size for f in held_out)
    results = {}
    for mb in [float(x) for x in args.sample_sweep.split(",")] + [total / 1e6]:
        out = work / f"sample-{mb:g}.json"
        job = json.dumps([[str(f) for f in train], int(mb * 1e6), args.vocab_size, str(out), args.processes])
        cmd = [sys.executable, "-c", SAMPLE_TRAIN, job]
        run = json.loads(subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cmd), str(work)],
                                        env=code_env(REPO), capture_output=True, text=True, check=True).stdout)
        tok = Tokenizer.load(out)
        tokens = sum(len(tok.encode_array(t)) for t in texts)
        results[mb] = (run["seconds"], run["peak_mb"], held_bytes / tokens)
    whole = results[total / 1e6][2]
    print(f"\n[sample] tokenizers of {args.vocab_size:,} ids trained on evenly spread samples of the {total / 1e6:.0f} MB "
          f"of gutenberg_train + enwiki_train vs on all of it; bytes per token on gutenberg_valid + enwiki_valid:")
    for mb, (seconds, peak, bpt) in results.items():
        print(f"  sample {mb:6.1f} MB   training {seconds:6.1f} s   peak RSS {peak:6.0f} MB   {bpt:.4f} bytes/token   "
              f"ratio to the whole-corpus tokenizer {bpt / whole:.4f}")


def main() -> None:
    global DATA  # the sections read their source texts from it
    args = parse_args()
    DATA = args.data_dir
    sections = set(args.sections.split(","))
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    keep = args.workdir is not None
    work = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="data_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"data_scale: workdir {work}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    try:
        if "sample" in sections:
            section_sample(args, work)
        if "encode" in sections:
            section_encode(args, work)
        if sections & {"cold", "warm", "compression", "ddp"}:
            large = build_corpus(work / "corpus-large", args.size_mb)
            small = build_corpus(work / "corpus-small", args.small_mb)
            old = old_code(args.old_commit, work) if sections & {"cold", "ddp"} else None
            if "cold" in sections:
                section_cold(args, work, large, small, old)
            if "warm" in sections:
                section_warm(args, work, large)
            if "compression" in sections:
                section_compression(args, work, large)
            if "ddp" in sections:
                section_ddp(args, work, large, old)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"data_scale: done, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
