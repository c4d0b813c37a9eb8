"""Plot val bits per byte against wall time for the runs of a recipe sweep (ours and the nanoGPT anchor).

    python benchmarks/plot_recipe.py recipe_sweep/results.json --runs default,old-default,nanoGPT \\
        --out docs/recipe_bpb_vs_time.png

Reads the `results.json` written by `benchmarks/recipe_sweep.py`. The x axis is seconds since each run's
process started (so our curves include tokenizer training and encoding); every point is a validation on
the whole val split (nanoGPT's points: its checkpoints, evaluated by `benchmarks/nanogpt_anchor.py`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"default": "llm_lit: the default recipe", "old-default": "llm_lit: the earlier AdamW + cosine config",
          "nanoGPT": "nanoGPT char-level CPU recipe"}


def plot(results: dict, names: list[str], out: Path, target: float | None, title: str) -> None:
    """One colour per run name, one line per seed; the budget and the target as guides."""
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    budget = results["meta"].get("budget_s")
    for i, name in enumerate(names):
        runs = [r for r in results["runs"] if r["name"] == name and r.get("curve")]
        for j, run in enumerate(sorted(runs, key=lambda r: r.get("seed", 0))):
            xs = [p["wall_s"] for p in run["curve"]]
            ys = [p["bpb"] for p in run["curve"]]
            label = f"{LABELS.get(name, name)}: {run['final_bpb']:.3f}" if j == 0 else None
            ax.plot(xs, ys, "o-", ms=3, lw=1.2, color=f"C{i}", alpha=1.0 if j == 0 else 0.45, label=label)
    if target is not None:
        ax.axhline(target, color="gray", lw=0.8, ls=":", label=f"target {target:.2f} bpb")
    if budget:
        ax.axvline(budget, color="gray", lw=0.8, ls="--", label=f"budget {budget:.0f} s")
    meta = results["meta"]
    ax.set_xlabel("seconds since the process started (tokenizer training included)")
    ax.set_ylabel("val bits per byte (whole val split)")
    ax.set_ylim(top=min(3.2, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}; {meta['parallel']} run(s) at a time, {meta['threads']} thread(s) each", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"Wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, help="results.json of benchmarks/recipe_sweep.py")
    p.add_argument("--runs", default="default,old-default,nanoGPT", help="comma-separated run names to draw")
    p.add_argument("--out", type=Path, default=Path("docs/recipe_bpb_vs_time.png"))
    p.add_argument("--target", type=float, default=None, help="a val bpb to draw as a guide")
    p.add_argument("--title", default="tinyshakespeare, last 10% for validation")
    args = p.parse_args()
    results = json.loads(args.results.read_text())
    plot(results, [n for n in args.runs.split(",") if n], args.out, args.target, args.title)


if __name__ == "__main__":
    main()
