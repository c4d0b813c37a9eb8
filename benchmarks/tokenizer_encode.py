"""Benchmark: encoding throughput vs tiktoken and HF `tokenizers`, identical ids, streaming memory.

    python benchmarks/tokenizer_encode.py --data-dir path/to/corpora   # train on enwiki_train (vocab 10,000), then measure
    python benchmarks/tokenizer_encode.py --tokenizer tok.json     # use a saved tokenizer instead
    python benchmarks/tokenizer_encode.py --skip-identity --skip-stream

1. Throughput, single process, on the whole of `--corpus`: ours with a cold cache (a
   fresh Tokenizer, the honest first-pass figure) and warm (second pass), our pre-tokenizer
   alone and the GPT-2 regex `findall` alone (the `regex`-module pattern our ASCII fast
   path replaces), tiktoken built
   offline from OUR vocab and merges (rank = id), and HF `tokenizers` loaded from our
   `save_hf` file. Interleaved repeats; medians and ratios printed.
2. Identity: ours == HF (from save_hf) == tiktoken on the whole of every corpus (*.txt) in
   `--data-dir`, compared block by block at exact pre-token boundaries.
3. Streaming: `python -m tokenizer encode` on `--corpus` in a child process; its peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tiktoken  # noqa: E402
import tokenizers  # noqa: E402

from tokenizer import Tokenizer, train_bpe  # noqa: E402
from corpora import add_data_dir_argument, corpus_file  # noqa: E402
from report import interleaved, print_medians, seconds  # noqa: E402
from tokenizer.pretokenize import GPT2_PATTERN, PRETOKEN_RE, chunk_boundaries, pretokens  # noqa: E402

EOT = "<|endoftext|>"


def build_references(tok: Tokenizer, tmp: str) -> tuple[tiktoken.Encoding, tokenizers.Tokenizer]:
    """tiktoken and HF tokenizers with exactly our vocab, merges and special tokens."""
    specials = {s: tok.token_to_id(s) for s in tok.special_tokens}
    ranks = {t: i for i, t in tok.vocab.items() if i not in specials.values()}
    enc = tiktoken.Encoding(name="llm_lit", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    hf_path = os.path.join(tmp, "tokenizer.json")
    tok.save_hf(hf_path)
    return enc, tokenizers.Tokenizer.from_file(hf_path)


def throughput(tok: Tokenizer, enc, hf, text: str, repeats: int) -> None:
    mb = len(text.encode("utf-8")) / 1e6
    fresh: list[Tokenizer] = []  # each round's new tokenizer: its first encode runs with an empty cache

    def cold() -> float:
        fresh[:] = [Tokenizer(tok.vocab, tok.merges, tok.special_tokens)]
        return seconds(lambda: fresh[0].encode(text))

    times = interleaved({
        "ours (cold cache)": cold,
        "ours (warm cache)": lambda: seconds(lambda: fresh[0].encode(text)),
        # our pre-tokens: the ASCII fast path + the Unicode pattern around the rest
        "our pre-tokens": lambda: seconds(lambda: pretokens(text)),
        "GPT-2 regex alone": lambda: seconds(lambda: PRETOKEN_RE.findall(text)),
        "tiktoken": lambda: seconds(lambda: enc.encode_ordinary(text)),
        "HF tokenizers": lambda: seconds(lambda: hf.encode(text, add_special_tokens=False).ids),
    }, repeats)
    print(f"\nthroughput on {mb:.1f} MB, single process, {repeats} interleaved runs, median MB/s:")
    rates = {name: [mb / t for t in runs] for name, runs in times.items()}
    print_medians(rates, references=["tiktoken", "HF tokenizers"], unit="MB/s", digits=2, show_runs=True)


def identity(tok: Tokenizer, enc, hf, paths: list[Path]) -> bool:
    """Ours == HF == tiktoken on each whole file, block by block at exact boundaries."""
    print("\nidentical ids (ours vs HF from save_hf vs tiktoken), whole files:")
    all_same = True
    for path in paths:
        bounds = chunk_boundaries(path, 4 << 20, tok.special_tokens)
        same, n = True, 0
        with open(path, "rb") as f:
            for a, b in zip(bounds, bounds[1:]):
                f.seek(a)
                text = f.read(b - a).decode("utf-8")
                ours = tok.encode(text)
                n += len(ours)
                same &= ours == hf.encode(text, add_special_tokens=False).ids == enc.encode(text, allowed_special="all")
        all_same &= same
        print(f"  {path.name:24s} {os.path.getsize(path) / 1e6:6.1f} MB  {n:>10,} tokens  {'identical' if same else 'DIFFERENT'}")
    return all_same


# Runs the CLI as the child of a small fresh interpreter: a child forked straight from this
# (large) benchmark process would count this process's pages in its peak RSS.
MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, capture_output=True)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def streaming(tok_path: str, corpus: Path, tmp: str) -> None:
    out = os.path.join(tmp, "tokens.bin")
    cli = [sys.executable, "-m", "tokenizer", "encode", "--tokenizer", tok_path, "--input", str(corpus), "--output", out, "--quiet"]
    report = subprocess.run([sys.executable, "-c", MEASURE, *cli], cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    seconds, peak = float(report[0]), float(report[1])
    print(f"\nstreaming `python -m tokenizer encode` on {corpus.name}: peak RSS {peak:.0f} MB, {seconds:.1f} s "
          f"({os.path.getsize(corpus) / 1e6 / seconds:.1f} MB/s including start-up), {os.path.getsize(out) / 1e6:.1f} MB of ids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=None, help="the text to time (default: enwiki_train.txt of --data-dir)")
    add_data_dir_argument(parser, "enwiki_train.txt, and every *.txt for the identity check")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer JSON file; default: train one on --corpus")
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-identity", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()
    corpus = Path(args.corpus) if args.corpus else corpus_file(args.data_dir, "enwiki_train.txt")
    with tempfile.TemporaryDirectory() as tmp:
        if args.tokenizer:
            tok_path = args.tokenizer
            tok = Tokenizer.load(tok_path)
        else:
            vocab, merges = train_bpe(corpus, args.vocab_size, [EOT])
            tok = Tokenizer(vocab, merges, [EOT])
            tok_path = os.path.join(tmp, "tok.json")
            tok.save(tok_path)
        print(f"tokenizer: {tok}")
        enc, hf = build_references(tok, tmp)
        throughput(tok, enc, hf, corpus.read_text(encoding="utf-8"), args.repeats)
        if not args.skip_identity:
            identity(tok, enc, hf, sorted(args.data_dir.glob("*.txt")))
        if not args.skip_stream:
            streaming(tok_path, corpus, tmp)


if __name__ == "__main__":
    main()
