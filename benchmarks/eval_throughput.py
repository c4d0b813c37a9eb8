"""Requests per second of `llm_lit eval`'s adapter against the harness's own `--model hf`, same model.

The model is the default config's (configs/shakespeare.yaml: Llama-style, d_model 128, 4 layers,
context 128) with a BPE tokenizer trained on the bundled corpus; it is exported to a Hugging
Face folder, and both adapters score every request of the shipped multiple-choice task
(`shakespeare_next_line`: 300 questions x 4 endings), the requests the harness builds from its
YAML (the context, then a new line and the ending), at the same batch size, in interleaved rounds:

* `hf`: `lm_eval.models.huggingface.HFLM` on the exported folder, the reference;
* `llm_lit`: `llm_lit.evals.harness.LlmLitLM` on the model itself (each question's context encoded
  once, equal-length context batches, continuations on the cached context).

Printed: each one's median requests/s, their ratio (median of paired rounds), and the largest
difference between the two adapters' log-likelihoods.

    python benchmarks/eval_throughput.py [--batch-size 32] [--repeats 5] [--items 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.data.tokens import BUNDLED_CORPUS  # noqa: E402
from llm_lit.evals.harness import LlmLitLM  # noqa: E402
from llm_lit.evals.items import read_items  # noqa: E402
from llm_lit.evals.next_line import DELIMITER  # noqa: E402
from llm_lit.evals.shipped_tasks import NEXT_LINE_FILE, TASKS_FOLDER  # noqa: E402
from llm_lit.interop import export_hf  # noqa: E402
from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from report import interleaved, paired_ratio, print_medians, seconds  # noqa: E402
from tokenizer import Tokenizer, train_bpe  # noqa: E402


def build(vocab_size: int) -> tuple[TransformerLM, Tokenizer]:
    """The default config's model (random weights: speed does not depend on them) and a tokenizer."""
    vocab, merges = train_bpe(BUNDLED_CORPUS, vocab_size, ["<|endoftext|>"])
    tok = Tokenizer(vocab, merges, ["<|endoftext|>"])
    config = ModelConfig.llama(vocab_size=vocab_size, context_length=128, d_model=128, n_layers=4, n_heads=4)
    torch.manual_seed(0)
    return TransformerLM(config).eval(), tok


def requests(items: int) -> list:
    """The loglikelihood requests of the shipped multiple-choice task's first `items` questions."""
    from lm_eval.api.instance import Instance

    args = [(item.context, DELIMITER + ending) for item in read_items(TASKS_FOLDER / NEXT_LINE_FILE, items)
            for ending in item.endings]
    return [Instance(request_type="loglikelihood", doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    model, tok = build(args.vocab)
    batch = requests(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(model, tok, Path(tmp) / "hf")
        adapters = {"hf": HFLM(pretrained=str(folder), batch_size=args.batch_size, device="cpu", dtype="float32"),
                    "llm_lit": LlmLitLM(model, tok, batch_size=args.batch_size)}
        answers = {name: lm.loglikelihood(batch, disable_tqdm=True) for name, lm in adapters.items()}  # warm-up
        times = interleaved({name: (lambda lm=lm: seconds(lambda: lm.loglikelihood(batch, disable_tqdm=True)))
                             for name, lm in adapters.items()}, args.repeats, alternate=True)
    rates = {name: [len(batch) / t for t in values] for name, values in times.items()}
    difference = max(abs(a[0] - b[0]) for a, b in zip(answers["hf"], answers["llm_lit"]))
    print(f"{len(batch)} loglikelihood requests ({args.items} questions), batch size {args.batch_size}, "
          f"{args.threads} thread(s), {args.repeats} rounds")
    print_medians(rates, unit=" requests/s")
    print(f"llm_lit / hf requests per second (median of paired rounds): "
          f"{paired_ratio(rates['llm_lit'], rates['hf']):.2f}x")
    print(f"largest log-likelihood difference: {difference:.2e}")


if __name__ == "__main__":
    main()
