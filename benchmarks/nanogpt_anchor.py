"""nanoGPT's char-level CPU recipe as an anchor, given a wall-time budget, with val bits per byte on its
whole val split.

    python benchmarks/nanogpt_anchor.py --nanogpt /path/to/nanoGPT --budget 600 --workdir /tmp/anchor

No nanoGPT code is part of llm_lit: this script runs a nanoGPT checkout as a separate program.

* The checkout is copied (without .git) to `WORKDIR/src`; nothing is written into it.
* Its `shakespeare_char` data is prepared here from our corpus with the logic of its `prepare.py`
  (vocabulary = the sorted set of characters, the first 90% of the text for training, the last 10%
  for validation, ids as uint16 `train.bin` / `val.bin`, and `meta.pkl`). With `--train` (and
  `--val`) the same preparation is made of other text files, as the `char_corpus` dataset: the
  vocabulary is then every character of both files.
* nanoGPT has no time budget, so its iteration count is calibrated: a short run measures the
  seconds per iteration and the start-up, and the real run gets `max_iters = lr_decay_iters`
  = the iterations that fit (its learning rate decays over them, as the recipe intends). Its real
  wall time is reported next to the budget.
* Its recipe is the README's CPU one: 4 layers, 4 heads, 128 wide, context 64, batch 12, no dropout,
  lr 1e-3 cosine to 1e-4, `--compile=False`; `--eval_iters 20` for its own (20-batch) estimates.
* Every checkpoint it writes (`always_save_checkpoint`, at `eval_interval`) is copied as it
  appears, and each is evaluated afterwards on the *whole* val split in non-overlapping windows of
  its context: cross-entropy summed in float64, divided by ln 2 and the UTF-8 bytes of the predicted
  characters (on tinyshakespeare, which is ASCII, one per character), so its bits per byte are
  measured as ours are, not from its 200-batch (here 20-batch) estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt"

#: The README's CPU recipe (block_size 64, 4x4x128, batch 12, no dropout); iterations are set per budget.
CPU_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
              "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]


def copy_checkout(nanogpt: Path, workdir: Path) -> Path:
    """A copy of the nanoGPT checkout at `workdir/src` (without .git)."""
    src = workdir / "src"
    if not (src / "train.py").exists():
        shutil.copytree(nanogpt, src, ignore=shutil.ignore_patterns(".git", "out*", "*.bin", "*.pkl"))
    return src


def prepare_char_data(corpus: Path, out: Path, val_corpus: Optional[Path] = None) -> dict[str, Any]:
    """nanoGPT's char-level preparation into `out` (train.bin, val.bin, meta.pkl, and bytes.json: each id's UTF-8
    length): ids are indices into the sorted set of characters; the first 90% of `corpus` trains and the last 10%
    validates, or with `val_corpus` all of `corpus` trains and all of `val_corpus` validates."""
    text = corpus.read_text(encoding="utf-8")
    if val_corpus is None:
        cut = int(len(text) * 0.9)
        train, val = text[:cut], text[cut:]
    else:
        train, val = text, val_corpus.read_text(encoding="utf-8")
    chars = sorted(set(train) | set(val))
    if len(chars) > 2**16:
        raise RuntimeError(f"{len(chars)} distinct characters do not fit nanoGPT's uint16 ids")
    stoi = {ch: i for i, ch in enumerate(chars)}
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val)):
        np.array([stoi[c] for c in part], dtype=np.uint16).tofile(out / f"{name}.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(out / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    (out / "bytes.json").write_text(json.dumps([len(c.encode("utf-8")) for c in chars]))
    return {"vocab_size": len(chars), "train_chars": len(train), "val_chars": len(val),
            "val_bytes": len(val.encode("utf-8"))}


def anchor_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    return env


def run_train(src: Path, out_dir: Path, iters: int, eval_interval: int, log_interval: int, threads: int,
              pin: Optional[int], log: Path, watch: bool, dataset: str = "shakespeare_char") -> dict[str, Any]:
    """Run nanoGPT's train.py on `data/<dataset>` for `iters` iterations; returns wall time, the log's iteration
    times and, with `watch`, a copy of every checkpoint it wrote, with its age in seconds since the start."""
    command = [sys.executable, "-u", "train.py", *CPU_RECIPE, f"--dataset={dataset}", f"--max_iters={iters}",
               f"--lr_decay_iters={iters}",
               f"--eval_interval={eval_interval}", f"--log_interval={log_interval}", "--always_save_checkpoint=True",
               f"--out_dir={out_dir}"]
    if pin is not None:
        command = ["taskset", "-c", str(pin), *command]
    out_dir.mkdir(parents=True, exist_ok=True)
    copies: list[dict[str, Any]] = []
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=src, env=anchor_env(threads), stdout=out, stderr=subprocess.STDOUT)
        seen = None
        while proc.poll() is None:
            time.sleep(0.25)
            if watch:
                seen = _copy_if_new(out_dir / "ckpt.pt", seen, started, copies)
        if watch:
            _copy_if_new(out_dir / "ckpt.pt", seen, started, copies)
    wall = time.time() - started
    text = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"nanoGPT's train.py failed (exit {proc.returncode}); see {log}:\n{text[-2000:]}")
    iter_ms = [float(m) for m in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", text, re.M)]
    return {"wall_s": wall, "iter_ms": iter_ms, "checkpoints": copies, "command": command}


def _copy_if_new(path: Path, seen: Optional[tuple], started: float, copies: list[dict[str, Any]]) -> Optional[tuple]:
    """Copy `path` when its (mtime, size) changed and it has stopped growing; records its age."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return seen
    key = (stat.st_mtime_ns, stat.st_size)
    if key == seen:
        return seen
    time.sleep(0.2)
    again = path.stat()
    if (again.st_mtime_ns, again.st_size) != key:
        return seen  # still being written: next poll
    copy = path.with_name(f"ckpt-{len(copies):03d}.pt")
    shutil.copyfile(path, copy)
    copies.append({"path": str(copy), "age_s": stat.st_mtime - started})
    return key


def calibrate(src: Path, workdir: Path, threads: int, pin: Optional[int], dataset: str,
              iters: int = 150) -> dict[str, float]:
    """Seconds per training iteration (median of the log's, after the first 10) and the start-up seconds
    (wall time minus the iterations), from a short run."""
    result = run_train(src, workdir / "calibration", iters, eval_interval=10**9, log_interval=1, threads=threads,
                       pin=pin, log=workdir / "calibration.log", watch=False, dataset=dataset)
    per_iter = statistics.median(result["iter_ms"][10:]) / 1000
    return {"iter_s": per_iter, "startup_s": max(0.0, result["wall_s"] - per_iter * iters)}


EVALUATE = r"""
import json, math, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from model import GPT, GPTConfig
val = torch.from_numpy(np.fromfile(sys.argv[2], dtype=np.uint16).astype(np.int64))
byte_lengths = torch.tensor(json.load(open(sys.argv[3])), dtype=torch.int64)
out = []
for path in sys.argv[4:]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    T = ckpt["model_args"]["block_size"]
    windows = [(s, min(s + T, len(val) - 1)) for s in range(0, len(val) - 1, T)]  # targets val[1:], each once
    nats, count, nbytes = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(windows), 64):
            group = windows[i:i + 64]
            for length in sorted({e - s for s, e in group}):
                rows = [s for s, e in group if e - s == length]
                x = torch.stack([val[s:s + length] for s in rows])
                y = torch.stack([val[s + 1:s + length + 1] for s in rows])
                logits, _ = model(x, y)  # with targets, nanoGPT returns the logits of every position
                nats += torch.nn.functional.cross_entropy(logits.double().flatten(0, 1), y.flatten(), reduction="sum").item()
                count += y.numel()
                nbytes += int(byte_lengths[y].sum())
    out.append({"path": path, "iter": int(ckpt["iter_num"]), "bpb": nats / math.log(2) / nbytes, "targets": count})
print(json.dumps(out))
"""


def evaluate(src: Path, checkpoints: list[str], threads: int = 1, dataset: str = "shakespeare_char"
             ) -> list[dict[str, Any]]:
    """Val bits per byte of each nanoGPT checkpoint on the whole val split (see the module docstring)."""
    if not checkpoints:
        return []
    data = src / "data" / dataset
    result = subprocess.run([sys.executable, "-c", EVALUATE, str(src), str(data / "val.bin"), str(data / "bytes.json"),
                             *checkpoints], cwd=src,
                            env=anchor_env(threads), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"evaluating nanoGPT checkpoints failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_anchor(nanogpt: Path, workdir: Path, budget: Optional[float] = None, iters: Optional[int] = None,
               threads: int = 1, pin: Optional[int] = None, points: int = 10, train: Optional[Path] = None,
               val: Optional[Path] = None, eval_threads: Optional[int] = None) -> dict[str, Any]:
    """Calibrate (with `budget`) or take `iters`, train, and evaluate every checkpoint; a JSON-able summary. The
    text is the bundled corpus (90/10), or `train` (with `val`, or its own last 10%)."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = copy_checkout(nanogpt, workdir)
    dataset = "shakespeare_char" if train is None else "char_corpus"
    data = prepare_char_data(train or CORPUS, src / "data" / dataset, val)
    calibration = None
    if iters is None:
        if budget is None:
            raise ValueError("give a budget (seconds) or iters")
        calibration = calibrate(src, workdir, threads, pin, dataset)
        # the evaluations at every eval_interval (2 x 20 batches each) and checkpoint writes: 3% of the time
        iters = max(10, int((budget - calibration["startup_s"]) * 0.97 / calibration["iter_s"]))
    out_dir = workdir / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    run = run_train(src, out_dir, iters, eval_interval=max(1, iters // points), log_interval=100, threads=threads,
                    pin=pin, log=workdir / "train.log", watch=True, dataset=dataset)
    scores = evaluate(src, [c["path"] for c in run["checkpoints"]], threads=eval_threads or max(threads, 1),
                      dataset=dataset)
    curve = [{"wall_s": c["age_s"], "step": s["iter"], "bpb": s["bpb"]} for c, s in zip(run["checkpoints"], scores)]
    curve = [p for p in curve if p["step"] > 0]
    return {"name": "nanoGPT", "iters": iters, "budget_s": budget, "wall_s": run["wall_s"], "threads": threads,
            "pin": pin, "calibration": calibration, "curve": curve, "final_bpb": curve[-1]["bpb"] if curve else math.nan,
            "command": " ".join(run["command"]), "data": data}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout (read only)")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--budget", type=float, help="wall-time seconds to calibrate the iteration count for")
    p.add_argument("--iters", type=int, help="fixed iteration count instead of a budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pin", type=int, help="pin to this CPU core (taskset)")
    p.add_argument("--train", type=Path, help="a text file to train on instead of the bundled corpus")
    p.add_argument("--val", type=Path, help="with --train: the validation text (default: the last 10%% of --train)")
    args = p.parse_args()
    summary = run_anchor(args.nanogpt, args.workdir, args.budget, args.iters, args.threads, args.pin,
                         train=args.train, val=args.val)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
