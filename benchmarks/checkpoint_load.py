"""What verifying checksums costs when a checkpoint is loaded (and recording them when it is saved).

A gpt2-small checkpoint (124M parameters, fp32: the weights `predict`, `validate` and `export`
read) is written once by `llm_lit.run.checkpoint.write_checkpoint`; with `--optimizer-state` it
also holds AdamW's two moments per parameter, as the checkpoints `fit --ckpt_path` resumes
from. Then, in interleaved rounds, from the page cache (the disk is out of the picture):

* `torch.load`: `torch.load(weights_only=True)` alone, the reference;
* `ours, unverified`: `read_checkpoint(verify=False)` (torch.load plus our checks of the file);
* `ours, verified`: `read_checkpoint()`, as every load runs: CRC-32 of every tensor, the
  structure's CRC, and the finiteness of the weights.

Medians of seconds and ratios to torch.load are printed, then the verification's own cost.

    python benchmarks/checkpoint_load.py [--preset gpt2-small] [--optimizer-state] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.run.checkpoint import read_checkpoint, write_checkpoint  # noqa: E402
from llm_lit.run.checksums import CHECKSUMS_KEY, checksums  # noqa: E402
from llm_lit.model import TransformerLM  # noqa: E402
from llm_lit.commands.presets import load_preset  # noqa: E402
from report import interleaved, medians, print_medians, seconds  # noqa: E402


def write_test_checkpoint(path: Path, preset: str, optimizer_state: bool) -> int:
    """Write a checkpoint of `preset`'s model (random weights) at `path`; returns its size in bytes."""
    config, _, _ = load_preset(preset)
    model = TransformerLM(config)
    write_checkpoint(model, None, path)
    if optimizer_state:  # AdamW's state, as fit's checkpoints hold it, checksummed like everything else
        checkpoint = torch.load(path, weights_only=True)
        checkpoint.pop(CHECKSUMS_KEY)
        state = {i: {"step": torch.tensor(10.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
                 for i, p in enumerate(model.parameters())}
        checkpoint["optimizer_states"] = [{"state": state, "param_groups": [{"params": list(state)}]}]
        torch.save({**checkpoint, CHECKSUMS_KEY: checksums(checkpoint)}, path)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2-small")
    parser.add_argument("--optimizer-state", action="store_true", help="also hold AdamW's moments (a resume checkpoint)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
        path = Path(folder) / "model.ckpt"
        size = write_test_checkpoint(path, args.preset, args.optimizer_state)
        read_checkpoint(path, mmap=False)  # into the page cache, and a check that it verifies
        times = interleaved({
            "torch.load": lambda: seconds(lambda: torch.load(path, map_location="cpu", weights_only=True)),
            "ours, unverified": lambda: seconds(lambda: read_checkpoint(path, mmap=False, verify=False)),
            "ours, verified": lambda: seconds(lambda: read_checkpoint(path, mmap=False)),
        }, repeats=args.repeats, alternate=True)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        loaded.pop(CHECKSUMS_KEY)
        record = interleaved({"computing the checksums": lambda: seconds(lambda: checksums(loaded))},
                             repeats=args.repeats)

    what = "weights + AdamW moments" if args.optimizer_state else "weights"
    print(f"{args.preset} checkpoint ({what}), {size / 1e6:.0f} MB, loaded from the page cache; "
          f"median of {args.repeats} interleaved rounds, seconds (ratio to torch.load):")
    mid = print_medians(times, references=["torch.load"], unit="s", digits=3)
    overhead = mid["ours, verified"] - mid["ours, unverified"]
    print(f"  verification: {overhead:+.3f} s ({overhead / mid['torch.load']:+.0%} of torch.load), "
          f"{size / 1e9 / max(overhead, 1e-9):.1f} GB/s")
    print(f"  recording them when saving (llm_lit.run.checksums.checksums alone): "
          f"{medians(record)['computing the checksums']:.3f} s")


if __name__ == "__main__":
    main()
