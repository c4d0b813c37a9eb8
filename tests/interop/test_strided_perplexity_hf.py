"""`validate --data.eval_stride` equals the Hugging Face perplexity guide's sliding window run by
`transformers` on the exported folder (same stride, same tokenizer), on wikitext-2.

Our window of `T` inputs scores up to `T` targets, the guide's window of `max_length` tokens scores
up to `max_length - 1`; so the guide runs with `max_length = T + 1` (a RoPE model takes the one
extra position; the extra input token predicts nothing that is scored). Where the guide weights a
window's mean loss by "valid labels - 1", which is one short in every window after the first, this
weights it by the labels the loss actually scored.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli, scalars

transformers = pytest.importorskip("transformers")
# the folder of the public corpora (docs/results.md names them): LLM_LIT_CORPORA, else shared/data beside the repository
CORPORA = Path(os.environ.get("LLM_LIT_CORPORA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
WIKITEXT = CORPORA / "wikitext2_test.txt"
STRIDE = 12


def guide_perplexity(folder: Path, text: str, max_length: int, stride: int) -> tuple[float, list[int]]:
    """The perplexity guide's loop (transformers' model and tokenizer); returns (loss, token ids)."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        scored = int((target_ids[:, 1:] != -100).sum())  # the labels the shifted loss averaged
        nll_sum += float(loss) * scored
        n_tokens += scored
        prev_end = end
        if end == seq_len:
            break
    return nll_sum / n_tokens, ids[0].tolist()


@pytest.mark.slow
@pytest.mark.skipif(not WIKITEXT.is_file(), reason="wikitext2_test.txt not found: set LLM_LIT_CORPORA to the corpora folder")
def test_strided_validation_equals_transformers_following_the_guide(tmp_path):
    text = WIKITEXT.read_bytes()[:20000].decode("utf-8", errors="ignore")
    (tmp_path / "wiki.txt").write_text(text, encoding="utf-8")
    fit = run_cli(["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "10", "--model.sample_prompts", "[]",
                   "--trainer.enable_progress_bar", "false"], tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = str(DEBUG_CKPTS / "last.ckpt")
    val = run_cli(["validate", "--ckpt_path", ckpt, "--data.val_files", '["wiki.txt"]', "--data.eval_stride",
                   str(STRIDE), "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                   "--trainer.logger.init_args.save_dir", "val_root", "--trainer.enable_progress_bar", "false"],
                  tmp_path)
    assert val.returncode == 0, val.stderr[-3000:]
    [(_, ours)] = scalars(tmp_path / "val_root", "val/loss")
    export = run_cli(["export", "--ckpt_path", ckpt, "--output", "hf"], tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]

    from llm_lit.run.checkpoint import load_checkpoint

    model, tok = load_checkpoint(tmp_path / ckpt)
    theirs, ids = guide_perplexity(tmp_path / "hf", text, model.config.context_length + 1, STRIDE)
    assert ids == tok.encode(text)  # the same tokens
    print(f"stride {STRIDE}, {len(ids)} tokens: llm_lit validate ppl {math.exp(ours):.6f}, "
          f"transformers (guide) ppl {math.exp(theirs):.6f}")
    assert math.exp(ours) == pytest.approx(math.exp(theirs), rel=1e-4)
