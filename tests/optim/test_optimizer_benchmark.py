"""benchmarks/optimizer_step.py prints our SGD and Muon step times beside torch's, with their ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_optimizer_step_benchmark_prints_sgd_and_muon_rows() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "optimizer_step.py"), "--config", "debug",
                           "--threads", "1", "--repeats", "2", "--optimizers", "sgd,muon"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for label in ("torch SGD foreach", "ours SGD", "torch Muon", "ours Muon", "ours Muon, NS float32",
                  "torch Muon + AdamW fused", "ours (model.optimizer.name muon)"):
        assert re.search(re.escape(label) + r"\s+[\d.]+ ms", out), (label, out)
    assert "14 block matrices" in out
    assert re.search(r"ours SGD .* / torch SGD foreach: [\d.]+ \(paired [\d.]+\)", out), out
    assert re.search(r"ours \(model.optimizer.name muon\) .* / torch Muon \+ AdamW fused: [\d.]+", out), out
