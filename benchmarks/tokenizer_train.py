"""Benchmark: BPE training time and peak memory, ours vs Hugging Face `tokenizers`, same run.

    python benchmarks/tokenizer_train.py --data-dir path/to/corpora   # tinyshakespeare + enwiki_train, vocab 10,000
    python benchmarks/tokenizer_train.py --corpus FILE --repeats 5
    python benchmarks/tokenizer_train.py --scaling             # also: does memory grow with corpus size?

Each training runs in a fresh child process (so peak RSS is its own); ours and HF's runs
are interleaved and the medians and ratio printed. Our peak counts the main process and
the largest pre-tokenization worker separately (they are alive at different times; the
merge phase runs after the workers exit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from corpora import add_data_dir_argument, corpus_file
from report import interleaved, medians, print_medians

REPO = Path(__file__).resolve().parents[1]

OURS = """
import json, resource, sys, time
from tokenizer import train_bpe
path, vocab_size, special = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start = time.perf_counter()
vocab, merges = train_bpe(path, vocab_size, [special])
seconds = time.perf_counter() - start
main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": max(main_mb, worker_mb), "main_mb": main_mb, "worker_mb": worker_mb, "merges": len(merges)}))
"""

HF = """
import json, resource, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
path, vocab_size, special = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[special],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
start = time.perf_counter()
tok.train([path], trainer)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "merges": len(json.loads(tok.to_str())["model"]["merges"])}))
"""


def run_child(code: str, path: str, vocab_size: int, special: str) -> dict:
    """Run one training in a fresh Python process; returns its JSON report."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, path, str(vocab_size), special], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(path: str, vocab_size: int, special: str, repeats: int) -> None:
    runs = interleaved({"ours": lambda: run_child(OURS, path, vocab_size, special),
                        "HF": lambda: run_child(HF, path, vocab_size, special)}, repeats)
    size_mb = os.path.getsize(path) / 1e6
    print(f"\n{Path(path).name} ({size_mb:.1f} MB) -> vocab {vocab_size}, {repeats} interleaved runs each, medians:")
    print("  seconds")
    print_medians({name: [r["seconds"] for r in rs] for name, rs in runs.items()}, references=["HF"], unit="s",
                  digits=2, show_runs=True, indent="    ")
    print("  peak memory (ours: main process + largest worker)")
    print_medians({name: [r["peak_mb"] for r in rs] for name, rs in runs.items()}, references=["HF"], unit="MB",
                  digits=0, indent="    ")
    ours = medians({key: [r[key] for r in runs["ours"]] for key in ("main_mb", "worker_mb")})
    print(f"    ours: main {ours['main_mb']:.0f} MB, largest worker {ours['worker_mb']:.0f} MB")


def scaling(path: str, vocab_size: int, special: str) -> None:
    """Train on the corpus and on the corpus repeated 3 times: same distinct pre-tokens, so same memory."""
    with tempfile.TemporaryDirectory() as tmp:
        tripled = os.path.join(tmp, "x3.txt")
        data = Path(path).read_bytes()
        Path(tripled).write_bytes(data * 3)
        one, three = run_child(OURS, path, vocab_size, special), run_child(OURS, tripled, vocab_size, special)
    print(f"\nmemory scaling ({Path(path).name} x1 vs x3): peak {one['peak_mb']:.0f} MB vs {three['peak_mb']:.0f} MB, "
          f"time {one['seconds']:.2f} s vs {three['seconds']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="*", default=None,
                        help="texts to train on (default: tinyshakespeare.txt and enwiki_train.txt of --data-dir)")
    add_data_dir_argument(parser, "tinyshakespeare.txt and enwiki_train.txt")
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--special-token", default="<|endoftext|>")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", action="store_true", help="also compare peak memory on the last corpus and on it repeated 3x")
    args = parser.parse_args()
    if not args.corpus:  # a file the folder lacks is the bundled corpus: time it once
        args.corpus = list(dict.fromkeys(str(corpus_file(args.data_dir, name))
                                         for name in ("tinyshakespeare.txt", "enwiki_train.txt")))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for path in args.corpus:
        bench(path, args.vocab_size, args.special_token, args.repeats)
    if args.scaling:
        scaling(args.corpus[-1], args.vocab_size, args.special_token)


if __name__ == "__main__":
    main()
