"""Does the recipe transfer? `configs/enwiki.yaml` (the default recipe on Wikipedia text) against nanoGPT's
char-level CPU recipe on the same text, side by side for the same wall time, each pinned to its own core.

    python benchmarks/transfer.py --nanogpt path/to/nanoGPT --train path/to/enwiki_train.txt \\
        --val path/to/enwiki_valid.txt [--budget 600] [--workdir /tmp/llm_lit_transfer] [--png docs/transfer.png]

Ours is `llm_lit fit --config configs/enwiki.yaml` as one process of one thread on core 0
(`recipe_sweep.run_ours`: `--trainer.devices 1 --data.batch_size 16`, its own token cache, so tokenizer
training and encoding count), keeping a checkpoint at each validation. nanoGPT runs on core 1
(`nanogpt_anchor.run_anchor`: its README's CPU recipe, iterations calibrated to the budget, the char
vocabulary of both files). Afterwards every checkpoint of both is scored on the whole validation file in bits
per byte (ours by `llm_lit validate --trainer.limit_val_batches 1.0`: the config's periodic validations score
a fixed quarter of the file), so the curves and the final figures are measured alike. Prints both curves
against wall time, the final figures and their ratio; writes `WORKDIR/results.json` (`plot_recipe.py`'s
format) and, with `--png`, the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from nanogpt_anchor import run_anchor  # noqa: E402
from recipe_sweep import load_average, run_ours  # noqa: E402

CONFIG = REPO / "configs" / "enwiki.yaml"


def keep_every_validation(every: int) -> list[str]:
    """Overrides adding a checkpoint callback that keeps one file per validation (`step<N>.ckpt`)."""
    return ["--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.every_n_train_steps", str(every), "--trainer.callbacks.save_top_k", "-1",
            "--trainer.callbacks.filename", "step{step}", "--trainer.callbacks.auto_insert_metric_name", "false",
            "--trainer.callbacks.dirpath", "kept"]


def score_whole_file(run_dir: Path, corpus: list[str], curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each kept checkpoint of our run, and its last one (where the budget stopped it), scored on the whole
    validation file, at the wall time of the validation of the same step."""
    seconds = {p["step"] + 1: p["wall_s"] for p in curve}  # a validation logged at step N - 1 ran after step N
    kept = {int(re.findall(r"\d+", c.name)[0]): c for c in (run_dir / "kept").glob("step*.ckpt")}
    last = next(run_dir.glob("runs/*/version_*/checkpoints/last.ckpt"))
    kept[max(seconds)] = last  # the budget's last step, validated at the end
    points = []
    for step, ckpt in sorted(kept.items()):
        result = subprocess.run(
            [sys.executable, "-m", "llm_lit", "validate", "--config", str(CONFIG), *corpus, "--ckpt_path", str(ckpt),
             "--data.cache_dir", str(run_dir / "cache"), "--trainer.devices", "1", "--trainer.limit_val_batches", "1.0",
             "--trainer.enable_progress_bar", "false", "--model.sample_prompts", "[]", "--torch_threads", "2"],
            cwd=run_dir, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"validating {ckpt} failed:\n{result.stderr[-2000:]}")
        bpb = float(re.search(r"val/bpb\s*[│|]\s*([\d.]+)", result.stdout).group(1))
        points.append({"wall_s": seconds.get(step, float("nan")), "step": step, "bpb": bpb})
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout (read only)")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--budget", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/llm_lit_transfer"))
    p.add_argument("--png", type=Path, help="draw both curves against wall time into this file")
    args = p.parse_args()
    corpus = ["--data.train_files", f"[{args.train.resolve()}]", "--data.val_files", f"[{args.val.resolve()}]"]
    every = int(yaml.safe_load(CONFIG.read_text())["trainer"]["val_check_interval"])  # a checkpoint per validation
    results: dict[str, Any] = {}
    print(f"ours and nanoGPT side by side, {args.budget:.0f} s each, one core each; load average before: "
          f"{load_average()}", flush=True)

    def ours() -> None:
        results["ours"] = run_ours("default", [*corpus, *keep_every_validation(every)], args.seed, args.workdir,
                                   args.budget, None, 1, 0, 0, CONFIG)

    def theirs() -> None:
        # six checkpoints: scoring each on the whole file takes about a minute
        results["nanoGPT"] = {**run_anchor(args.nanogpt, args.workdir / "nanoGPT", budget=args.budget, pin=1, points=6,
                                           train=args.train, val=args.val, eval_threads=2), "seed": 0}

    threads = [threading.Thread(target=ours), threading.Thread(target=theirs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load_after = load_average()
    run = results["ours"]
    if run["returncode"] != 0:
        raise SystemExit(f"our run failed; see {args.workdir}/default-seed{args.seed}/log.txt")
    run["curve_quarter"] = run["curve"]
    run["curve"] = score_whole_file(args.workdir / f"default-seed{args.seed}", corpus, run["curve"])
    run["final_bpb"] = run["curve"][-1]["bpb"]
    anchor = results["nanoGPT"]
    for name, r in (("ours (configs/enwiki.yaml)", run), ("nanoGPT char-level CPU recipe", anchor)):
        print(f"{name}:")
        for point in r["curve"]:
            print(f"  {point['wall_s']:6.0f} s  step {point['step']:6d}  val bpb {point['bpb']:.4f}")
    ratio = anchor["final_bpb"] / run["final_bpb"]
    print(f"\nwhole validation file, {args.budget:.0f} s each: ours {run['final_bpb']:.4f} bpb, nanoGPT "
          f"{anchor['final_bpb']:.4f} bpb; ours is {100 * (1 - 1 / ratio):.1f}% lower (ratio {ratio:.3f}); load "
          f"average after: {load_after}")
    meta = {"budget_s": args.budget, "parallel": 2, "threads": 1, "seeds": [args.seed], "corpus": args.train.name,
            "load_after": load_after}
    out = args.workdir / "results.json"
    out.write_text(json.dumps({"meta": meta, "runs": [{**run, "name": "default"}, {**anchor, "name": "nanoGPT"}]},
                              indent=1))
    if args.png:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "plot_recipe.py"), str(out), "--runs",
                        "default,nanoGPT", "--out", str(args.png), "--title",
                        f"{args.train.name} -> {args.val.name}, the whole file for validation"], check=True)


if __name__ == "__main__":
    main()
