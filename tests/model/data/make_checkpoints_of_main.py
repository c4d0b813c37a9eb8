"""Writes `checkpoints_of_main.pt`: tiny llm_lit checkpoints as the code before `ModelConfig.kernels`
wrote them (main at commit 114e25a, whose configs said `attention: fused|reference`), with logits
that code computed, so tests/model/test_old_checkpoints.py can prove they still load and compute
the same. Run it with that commit's code, not this one's:

    git archive 114e25a | tar -x -C /tmp/llm_lit_114e25a
    PYTHONPATH=/tmp/llm_lit_114e25a python tests/model/data/make_checkpoints_of_main.py

The file holds `{"tokenizer": dict, "ids": (2, 6), "checkpoints": {name: {"state_dict": ...,
"model_config": ..., "last_logits": (2, 3, vocab)}}}`: the parts of a Lightning checkpoint that
llm_lit wrote (the test adds the tokenizer and the Lightning keys back), kept small.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer, train_bpe

SHAPE = dict(vocab_size=260, context_length=8, d_model=8, n_layers=2, n_heads=2)
CONFIGS = {  # each kind of layer, and both attention settings of the old code
    "gpt2-tied-fused": ModelConfig.gpt2(**SHAPE, d_ff=16, attention="fused"),
    "llama-gqa-reference": ModelConfig.llama(**SHAPE, n_kv_heads=1, d_ff=16, attention="reference"),
    "alibi-untied-fused": ModelConfig(**SHAPE, position="alibi", d_ff=16, attention="fused"),
}


def main() -> None:
    tokenizer = Tokenizer(*train_bpe(Path(__file__), 260, ["<|endoftext|>"]), ["<|endoftext|>"])
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(0))
    checkpoints = {}
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        model = TransformerLM(config).eval()
        with torch.no_grad():
            for p in model.parameters():  # varied weights, so the logits depend on every layer
                p.add_(torch.randn_like(p) * 0.3)
            logits = model(ids)
        checkpoints[name] = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                             "model_config": config.to_dict(), "last_logits": logits[:, -3:].clone()}
    torch.save({"tokenizer": tokenizer.to_dict(), "ids": ids, "checkpoints": checkpoints},
               Path(__file__).with_name("checkpoints_of_main.pt"))


if __name__ == "__main__":
    main()
