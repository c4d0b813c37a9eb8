#!/usr/bin/env bash
# The headline figure of docs/results.md: val bits per byte at a wall-time budget for configs/shakespeare.yaml,
# the earlier AdamW + cosine config and nanoGPT's char-level CPU recipe, side by side, each pinned to one core
# with one torch thread; prints the table and draws val bpb against wall time.
#
#   benchmarks/recipe_final.sh [BUDGET_S] [OUT]          # defaults: 600 s, recipe_final/
#   NANOGPT=/path/to/nanoGPT benchmarks/recipe_final.sh  # the nanoGPT checkout (required)
#   PYTHON=/path/to/venv/bin/python benchmarks/recipe_final.sh   # the interpreter (default: python on PATH)
#
# Run it on a quiet machine: the three runs go at once on 3+ cores; on 2 cores ours and nanoGPT go
# first, side by side, and the old config after them (about 2 x BUDGET_S plus nanoGPT's calibration).
# Writes OUT/table.md, OUT/results.json and OUT/recipe_bpb_vs_time.png.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-600}
out=${2:-recipe_final}
nanogpt=${NANOGPT:-}
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # (nproc alone obeys OMP_NUM_THREADS)
parallel=$(( cores < 3 ? cores : 3 ))
if [ "$parallel" -lt 2 ]; then
    echo "error: this comparison pins each run to its own core and needs at least 2 cores (found $cores)." >&2
    exit 2
fi
if [ -z "$nanogpt" ]; then
    echo "error: NANOGPT is not set; set NANOGPT=/path/to/nanoGPT (a clone of github.com/karpathy/nanoGPT)." >&2
    exit 2
fi
if [ ! -f "$nanogpt/train.py" ]; then
    echo "error: no nanoGPT checkout at $nanogpt; set NANOGPT=/path/to/nanoGPT." >&2
    exit 2
fi
"${PYTHON:-python}" benchmarks/recipe_sweep.py --budget "$budget" --options default,old-default --seeds 1337 \
    --anchor "$nanogpt" --parallel "$parallel" --threads 1 --workdir "${TMPDIR:-/tmp}/llm_lit_recipe_final" --out "$out"
"${PYTHON:-python}" benchmarks/plot_recipe.py "$out/results.json" --runs default,old-default,nanoGPT \
    --out "$out/recipe_bpb_vs_time.png"
echo "plot: $out/recipe_bpb_vs_time.png"
