"""Export/import speed: our safetensors writer/reader vs the `safetensors` package, and `export_hf` vs
`transformers`' own `save_pretrained` on the same model.

A Llama-preset model (default: 12 layers, d_model 768, vocab 32000, about 150M parameters,
600 MB in fp32) with random weights. Each variant runs in interleaved rounds; medians of
seconds and of GB/s (state-dict bytes / time) are printed with the ratio ours / reference
(> 1 means ours is slower). Files go to a temporary folder on the same disk. Our writes are
atomic and durable (fsync before the rename, as every file llm_lit writes); the package does
not fsync, so a row without the fsync isolates the cost of the format code itself.

    python benchmarks/interop_export.py [--layers 12] [--d-model 768] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.interop import export_hf, load_hf_model  # noqa: E402
from llm_lit.interop import safetensors_io  # noqa: E402
from llm_lit.interop.hf_llama import to_hf_state_dict  # noqa: E402
from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from report import interleaved, medians, paired_ratio, seconds  # noqa: E402


def _save_without_fsync(tensors: dict, path: Path) -> None:
    """Our writer with the atomic-write fsync skipped: the format code alone, as the package does no fsync."""
    import tokenizer.atomic as atomic

    fsync = atomic._fsync_file
    atomic._fsync_file = lambda path: None
    try:
        safetensors_io.save_file(tensors, path, {"format": "pt"})
    finally:
        atomic._fsync_file = fsync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import safetensors.torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = ModelConfig.llama(vocab_size=args.vocab, d_model=args.d_model, n_layers=args.layers,
                               n_heads=args.d_model // 64, context_length=1024)
    model = TransformerLM(config).eval()
    tensors = to_hf_state_dict(model.state_dict(), config)
    gigabytes = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e9
    print(f"model: {model.num_parameters() / 1e6:.0f}M parameters, {gigabytes:.2f} GB fp32, "
          f"torch {torch.__version__}, safetensors {safetensors.__version__}, transformers {transformers.__version__}")

    work = Path(tempfile.mkdtemp(prefix="llm_lit_bench_"))
    ours_file, theirs_file = work / "ours.safetensors", work / "theirs.safetensors"
    hf = None
    variants = {
        "save safetensors": (lambda: safetensors_io.save_file(tensors, ours_file, {"format": "pt"}),
                             lambda: safetensors.torch.save_file(tensors, str(theirs_file), {"format": "pt"})),
        "save, no fsync": (lambda: _save_without_fsync(tensors, ours_file),
                           lambda: safetensors.torch.save_file(tensors, str(theirs_file), {"format": "pt"})),
        "load safetensors": (lambda: safetensors_io.load_file(ours_file),
                             lambda: {k: v.clone() for k, v in safetensors.torch.load_file(str(theirs_file)).items()}),
        "export folder": (lambda: export_hf(model, None, work / "ours_hf", overwrite=True),
                          lambda: hf.save_pretrained(work / "theirs_hf")),
        "import folder": (lambda: load_hf_model(work / "ours_hf"),
                          lambda: transformers.AutoModelForCausalLM.from_pretrained(work / "theirs_hf")),
    }
    try:
        export_hf(model, None, work / "ours_hf")
        hf = transformers.AutoModelForCausalLM.from_pretrained(work / "ours_hf")
        timed = {f"{step} {side}": (lambda fn=fn: seconds(fn))
                 for step, pair in variants.items() for side, fn in zip(("ours", "ref"), pair)}
        times = interleaved(timed, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mid = medians(times)
    print(f"{'step':<18}{'ours s':>9}{'ref s':>9}{'ours GB/s':>11}{'ref GB/s':>10}{'ours/ref':>10}{'paired':>8}"
          "   reference")
    references = ["safetensors.torch.save_file", "safetensors.torch.save_file", "safetensors.torch.load_file (+clone)",
                  "LlamaForCausalLM.save_pretrained", "AutoModelForCausalLM.from_pretrained"]
    for step, reference in zip(variants, references):
        a, b = mid[f"{step} ours"], mid[f"{step} ref"]
        paired = paired_ratio(times[f"{step} ours"], times[f"{step} ref"])
        print(f"{step:<18}{a:>9.3f}{b:>9.3f}{gigabytes / a:>11.2f}{gigabytes / b:>10.2f}{a / b:>10.2f}{paired:>8.2f}"
              f"   {reference}")
    print(f"medians of {args.repeats} interleaved repeats")


if __name__ == "__main__":
    main()
