"""Export to the Hugging Face layouts, checked against `transformers` itself (no download).

For each exportable config: `transformers` loads the folder with no code of ours, the logits
agree to 1e-5 in fp32, greedy generations are identical, and ours -> HF -> ours gives back
identical tensors.
"""

from __future__ import annotations

import json

import pytest
import torch
from interop_helpers import EXPORTABLE, VOCAB, make_config, random_model

from llm_lit.generation.sampling import SamplingConfig, generate
from llm_lit.interop import export_hf, hf_layout, load_hf, read_hf_config
from llm_lit.interop.hf_llama import adjacent_to_half, half_to_adjacent
from llm_lit.model import RotaryEmbedding

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

CLASSES = {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel"}


@pytest.fixture(scope="module", params=list(EXPORTABLE))
def exported(request, tok, tmp_path_factory):
    """(name, our model, export folder, the transformers model loaded from it)."""
    name = request.param
    model = random_model(make_config(name), seed=len(name))
    folder = export_hf(model, tok, tmp_path_factory.mktemp(name) / "hf")
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return name, model, folder, hf.eval()


def test_transformers_loads_the_matching_class(exported):
    name, model, folder, hf = exported
    assert type(hf).__name__ == CLASSES[hf_layout(model.config)]
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "generation_config.json", "merges.txt", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "vocab.json"]
    assert hf.config.tie_word_embeddings == model.config.tie_embeddings
    assert (hf.lm_head.weight is hf.get_input_embeddings().weight) == model.config.tie_embeddings


def test_logits_agree_to_1e5(exported):
    _, model, _, hf = exported
    ids = torch.randint(0, VOCAB, (3, model.config.context_length), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert ours.std() > 1.0  # the weights give varied, non-trivial logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_greedy_generations_are_identical(exported):
    _, model, _, hf = exported
    prompts = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
    new = 24
    ours = generate(model, prompts.tolist(), SamplingConfig(max_new_tokens=new, temperature=0.0))
    theirs = hf.generate(prompts, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                         eos_token_id=None, pad_token_id=0)
    assert ours == theirs[:, 5:].tolist()
    assert len(set(ours[0]) | set(ours[1])) >= 2  # not one token repeated throughout


def test_round_trip_gives_identical_tensors_and_tokenizer(exported, tok):
    _, model, folder, _ = exported
    back, back_tok = load_hf(folder, kernels=model.config.kernels)
    assert back.config == model.config
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert back_tok.fingerprint() == tok.fingerprint()
    assert (back.lm_head.weight is back.token_embeddings.weight) == model.config.tie_embeddings


def test_config_json_maps_every_setting(exported):
    _, model, folder, hf = exported
    c = model.config
    config = json.loads((folder / "config.json").read_text())
    if hf_layout(c) == "llama":
        assert (config["intermediate_size"], config["num_key_value_heads"], config["rms_norm_eps"]) == (c.d_ff, c.n_kv_heads, c.norm_eps)
        assert hf.config.rope_parameters["rope_theta"] == c.rope_theta
        assert config["attention_bias"] == config["mlp_bias"] == c.bias
    else:
        activation = "gelu_new" if c.gelu_approximate == "tanh" else "gelu"
        assert (config["n_inner"], config["layer_norm_epsilon"], config["activation_function"]) == (c.d_ff, c.norm_eps, activation)
    assert config["eos_token_id"] == 256  # <|endoftext|>
    assert read_hf_config(folder, kernels=c.kernels) == c


def test_exported_tokenizer_gives_our_ids_on_the_bundled_corpus(tok, corpus_text, tmp_path):
    # The tokenizer files are the same for every layout, so one export is checked.
    folder = export_hf(random_model(make_config("gpt2")), tok, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    tricky = "Hello  world!\n\n It's 12 o'clock<|endoftext|>日本 😀 e\u0301 \t end \r\n  x"
    assert hf_tok(corpus_text)["input_ids"] == tok.encode(corpus_text)
    assert hf_tok(tricky)["input_ids"] == tok.encode(tricky)
    assert hf_tok.decode(tok.encode(tricky)) == tricky
    assert hf_tok.eos_token == "<|endoftext|>" and hf_tok.eos_token_id == 256


@pytest.mark.parametrize("dtype, torch_dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_low_precision_export(tok, tmp_path, dtype, torch_dtype):
    model = random_model(make_config("llama"))
    folder = export_hf(model, tok, tmp_path / "hf", dtype=dtype)
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    assert hf.model.embed_tokens.weight.dtype == torch_dtype
    assert torch.equal(hf.model.embed_tokens.weight, model.token_embeddings.weight.to(torch_dtype))


def test_rope_row_permutation_turns_our_rotation_into_rotate_half():
    torch.manual_seed(0)
    heads, d_head, seq = 3, 8, 5
    x = torch.randn(1, heads, seq, d_head)
    rope = RotaryEmbedding(d_head, theta=100.0)
    ours = rope(x, torch.arange(seq))
    # Llama: x * cos + rotate_half(x) * sin on the half-split layout, angles repeated for both halves.
    cos, sin = rope.cos_sin(torch.arange(seq))
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    rows = x.transpose(1, 2).reshape(seq, heads * d_head).T  # (heads*d_head, seq): rows like a q_proj weight
    half = adjacent_to_half(rows, heads).T.reshape(1, seq, heads, d_head).transpose(1, 2)
    rotate_half = torch.cat([-half[..., d_head // 2:], half[..., :d_head // 2]], -1)
    theirs = half * cos + rotate_half * sin
    back = half_to_adjacent(theirs.transpose(1, 2).reshape(seq, heads * d_head).T, heads)
    torch.testing.assert_close(back.T.reshape(1, seq, heads, d_head).transpose(1, 2), ours)
    assert torch.equal(half_to_adjacent(adjacent_to_half(rows, heads), heads), rows)
