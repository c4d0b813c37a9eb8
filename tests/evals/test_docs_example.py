"""The Python example of docs/eval.md runs as written (on a small checkpoint)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from eval_helpers import TINY, bpe_tokenizer

from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.run.checkpoint import write_checkpoint

pytest.importorskip("lm_eval")
DOC = Path(__file__).resolve().parents[2] / "docs" / "eval.md"


@pytest.mark.slow
def test_the_simple_evaluate_example_runs(tmp_path, capsys):
    example = next(block for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
                   if "simple_evaluate" in block)
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.ckpt"
    write_checkpoint(TransformerLM(ModelConfig.llama(**TINY)), bpe_tokenizer(), checkpoint)
    exec(compile(example, str(DOC), "exec"), {"CHECKPOINT": str(checkpoint)})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert 0.0 <= float(printed) <= 1.0
