"""Import models that `transformers` itself wrote (safetensors, PyTorch .bin, sharded) into `TransformerLM`."""

from __future__ import annotations

import json

import pytest
import torch
from interop_helpers import VOCAB

from llm_lit.interop import load_hf, load_hf_model
from llm_lit.optim import AdamW

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _hf_llama(**overrides):  # noqa: ANN003
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-6, initializer_range=0.2, **overrides)
    return config, transformers.LlamaForCausalLM


def _hf_gpt2(**overrides):  # noqa: ANN003
    overrides = {"activation_function": "gelu", **overrides}
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=32,
                                     initializer_range=0.2, **overrides)
    return config, transformers.GPT2LMHeadModel


def _save(kind: str, folder, tok, safe: bool = True, shard: str | None = None, **overrides):  # noqa: ANN003
    torch.manual_seed(0)
    config, cls = (_hf_llama if kind == "llama" else _hf_gpt2)(**overrides)
    hf = cls(config).eval()
    with torch.no_grad():  # norms and biases random too, so every mapping matters
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    kwargs = {"max_shard_size": shard} if shard else {}
    hf.save_pretrained(folder, safe_serialization=safe, **kwargs)
    if tok is not None:
        tok.save_hf(folder / "tokenizer.json")
    return hf


CASES = {
    "llama-safetensors": ("llama", dict()),
    "llama-bin-tied-bias": ("llama", dict(safe=False, tie_word_embeddings=True, attention_bias=True, mlp_bias=True, rope_theta=300.0)),
    "llama-sharded": ("llama", dict(shard="100KB")),
    "gpt2-safetensors": ("gpt2", dict()),
    "gpt2-bin-sharded": ("gpt2", dict(safe=False, shard="100KB")),
    "gpt2-gelu-new": ("gpt2", dict(activation_function="gelu_new")),  # as in the released GPT-2
    "gpt2-gelu-pytorch-tanh": ("gpt2", dict(activation_function="gelu_pytorch_tanh")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_import_gives_the_same_logits(case, tok, tmp_path):
    kind, options = CASES[case]
    options = dict(options)
    safe, shard = options.pop("safe", True), options.pop("shard", None)
    hf = _save(kind, tmp_path, tok, safe=safe, shard=shard, **options)
    if shard:
        assert any(p.name.endswith(".index.json") for p in tmp_path.iterdir())
    model, loaded_tok = load_hf(tmp_path)
    assert loaded_tok.fingerprint() == tok.fingerprint()
    if kind == "gpt2":
        tanh = options.get("activation_function", "gelu") != "gelu"
        assert model.config.gelu_approximate == ("tanh" if tanh else "none")
    ids = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf(ids).logits
        for kernels in ("torch", "reference"):
            ours = load_hf_model(tmp_path, kernels=kernels)(ids) if kernels == "reference" else model(ids)
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert theirs.std() > 0.5


def test_released_gpt2_names_without_prefix_and_mask_buffers(tok, tmp_path):
    """The released GPT-2 files hold bare GPT2Model names plus the attn.bias mask buffers."""
    hf = _save("gpt2", tmp_path / "full", None)
    bare = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    bare["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    folder = tmp_path / "bare"
    folder.mkdir()
    torch.save(bare, folder / "pytorch_model.bin")
    (folder / "config.json").write_text((tmp_path / "full" / "config.json").read_text())
    ids = torch.randint(0, VOCAB, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(load_hf_model(folder)(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_imported_model_trains(tok, tmp_path):
    _save("llama", tmp_path, tok)
    model, _ = load_hf(tmp_path)
    model.train()
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    ids = torch.tensor([tok.encode("To be, or not to be, that is the question:")[:20]])
    losses = []
    for _ in range(8):
        loss = model.loss(ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_vocab_json_and_merges_txt_folder(tok, tmp_path):
    _save("gpt2", tmp_path, None)
    tok.save_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    _, loaded = load_hf(tmp_path)
    assert loaded.fingerprint() == tok.fingerprint()
