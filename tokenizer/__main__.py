"""Command line: `python -m tokenizer train|encode|decode ...`.

    python -m tokenizer train --input corpus.txt --vocab-size 10000 --special-tokens "<|endoftext|>" --output tok.json
    python -m tokenizer encode --tokenizer tok.json --input corpus.txt --output corpus.bin [--processes 4]
    python -m tokenizer decode --tokenizer tok.json --input corpus.bin --output corpus.txt

Errors in the input are printed as one line on stderr, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .base import END_OF_TEXT
from .bpe import BPETokenizer
from .errors import TokenizerError
from .kinds import load_tokenizer
from .token_file import read_token_file, write_token_file
from .train import train_bpe
from .workers import available_cores


UTF8_HELP = "strict: refuse input that is not UTF-8, saying where (default); replace: invalid bytes become U+FFFD"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the `train`, `encode` and `decode` subcommands."""
    parser = argparse.ArgumentParser(prog="python -m tokenizer", description="Train a byte-level BPE tokenizer, encode text files and decode token files.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a tokenizer on a UTF-8 text file and save it as JSON")
    train.add_argument("--input", required=True, help="UTF-8 text file to train on")
    train.add_argument("--vocab-size", type=int, required=True, help="total ids: 256 bytes + special tokens + merges")
    train.add_argument("--special-tokens", nargs="*", default=[END_OF_TEXT], help=f"tokens never split or merged (default: {END_OF_TEXT})")
    train.add_argument("--output", required=True, help="tokenizer JSON file to write")
    train.add_argument("--processes", type=int, default=None, help="pre-tokenization processes (default: one per CPU)")
    train.add_argument("--utf8-errors", choices=["strict", "replace"], default="strict", help=UTF8_HELP)
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    encode = sub.add_parser("encode", help="encode a UTF-8 text file into a flat binary token file + JSON sidecar")
    encode.add_argument("--tokenizer", required=True, help="tokenizer JSON file written by `train` (or a char tokenizer)")
    encode.add_argument("--input", required=True, help="UTF-8 text file to encode")
    encode.add_argument("--output", required=True, help="token file to write (its sidecar is OUTPUT.json)")
    encode.add_argument("--processes", type=int, default=None,
                        help="encoding processes (default: one per CPU core); the output is the same for any number")
    encode.add_argument("--utf8-errors", choices=["strict", "replace"], default="strict", help=UTF8_HELP)
    encode.add_argument("--quiet", action="store_true", help="no progress bar")

    decode = sub.add_parser("decode", help="decode a token file written by `encode` back into UTF-8 text")
    decode.add_argument("--tokenizer", required=True, help="the tokenizer JSON file that wrote the token file")
    decode.add_argument("--input", required=True, help="token file written by `encode` (with its OUTPUT.json sidecar)")
    decode.add_argument("--output", required=True, help="text file to write")
    return parser


def check_writable(path: str) -> None:
    """Fail before long work, not after it, when `path` cannot be written."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TokenizerError(f"cannot create the folder of output {path} ({e.strerror or e}); choose a path in a writable folder.") from None
    if Path(path).is_dir() or not os.access(folder, os.W_OK):
        raise TokenizerError(f"cannot write output {path}; choose a path in a writable folder.")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        check_writable(args.output)
        if args.command == "train":
            vocab, merges = train_bpe(
                args.input, args.vocab_size, args.special_tokens, args.processes, progress=not args.quiet, utf8_errors=args.utf8_errors
            )
            tok = BPETokenizer(vocab, merges, args.special_tokens)
            tok.save(args.output)
            print(f"wrote {args.output}: {tok.vocab_size} ids, {len(merges)} merges in {time.perf_counter() - start:.1f} s")
        elif args.command == "decode":
            tok = load_tokenizer(args.tokenizer)
            ids = read_token_file(args.input, tok.fingerprint(), tok.vocab_size)
            text = tok.decode([int(i) for i in ids])
            Path(args.output).write_text(text, encoding="utf-8", errors="surrogateescape")
            print(f"wrote {args.output}: {len(text):,} characters from {len(ids):,} tokens in "
                  f"{time.perf_counter() - start:.1f} s")
        else:
            tok = load_tokenizer(args.tokenizer)  # BPE or char
            processes = available_cores() if args.processes is None else args.processes
            sidecar = write_token_file(tok, args.input, args.output, progress=not args.quiet, utf8_errors=args.utf8_errors,
                                       processes=processes)
            print(
                f"wrote {args.output}: {sidecar['num_tokens']:,} {sidecar['dtype']} tokens from "
                f"{sidecar['source_bytes']:,} bytes in {time.perf_counter() - start:.1f} s"
            )
    except TokenizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
