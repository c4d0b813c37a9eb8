"""Every refusal of the interop code, each with its one-sentence message."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
from interop_helpers import TINY, make_config, random_model

from llm_lit.errors import UserError
from llm_lit.interop import export_hf, hf_layout, load_hf, load_hf_model, tokenizer_from_hf_json
from llm_lit.model import ModelConfig

# ---------------------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(position="alibi"), r"position='alibi' has no counterpart in LlamaForCausalLM \(RoPE\) or GPT2LMHeadModel"),
        (dict(position="sinusoidal"), r"position='sinusoidal' has no counterpart .* train with position='rope' or 'learned'"),
        (dict(position="none"), r"position='none' has no counterpart"),
        (dict(norm="layernorm"), r"A RoPE model exports as LlamaForCausalLM, which needs norm='rmsnorm' and ffn='swiglu' but this one has norm='layernorm' and ffn='swiglu'"),
        (dict(ffn="gelu"), r"RoPE model .* has norm='rmsnorm' and ffn='gelu'; train with the llama preset"),
        (dict(position="learned"), r"learned positions exports as GPT2LMHeadModel, .* this one has norm='rmsnorm', ffn='swiglu', bias=False; train with the gpt2 preset"),
        (dict(position="learned", norm="layernorm", ffn="gelu", bias=False), r"this one has bias=False;"),
        (dict(position="learned", norm="layernorm", ffn="gelu", bias=True, n_kv_heads=2), r"this one has n_kv_heads=2 \(n_heads=4\);"),
        (dict(qk_norm=True), r"^qk_norm=True \(RMSNorm of queries and keys\) has no counterpart in LlamaForCausalLM or "
                             r"GPT2LMHeadModel, so transformers would compute other logits from the exported weights; "
                             r"train without it to export"),
        (dict(embedding_scale=2.0), r"^embedding_scale=2.0 \(a multiplier on the token embeddings\) has no counterpart"),
        (dict(logit_scale=0.5, tie_embeddings=True), r"^logit_scale=0.5 \(a multiplier on the logits\) has no counterpart"),
        (dict(logit_softcap=30.0), r"^logit_softcap=30.0 \(tanh capping of the logits\) has no counterpart"),
        (dict(position="learned", norm="layernorm", ffn="gelu", bias=True, qk_norm=True, logit_softcap=15.0),
         r"^qk_norm=True \(RMSNorm of queries and keys\); logit_softcap=15.0 \(tanh capping of the logits\) has no"),
        (dict(ffn="relu2"), r"needs norm='rmsnorm' and ffn='swiglu' but this one has norm='rmsnorm' and ffn='relu2'"),
        (dict(position="learned", norm="layernorm", ffn="relu2", bias=True), r"this one has ffn='relu2'; train with the gpt2 preset"),
    ],
)
def test_configs_without_a_hugging_face_counterpart(overrides, message):
    config = ModelConfig(**{**TINY, **overrides})
    with pytest.raises(UserError, match=message):
        hf_layout(config)


def test_zero_init_residual_is_only_an_init_and_exports(tmp_path, tok):
    transformers = pytest.importorskip("transformers")
    model = random_model(make_config("gpt2", zero_init_residual=True))
    assert hf_layout(model.config) == "gpt2"
    hf = transformers.AutoModelForCausalLM.from_pretrained(export_hf(model, tok, tmp_path / "out")).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-5, rtol=0)


def test_refused_export_writes_nothing(tmp_path, tok):
    model = random_model(ModelConfig(**TINY, position="alibi"))
    with pytest.raises(UserError, match="has no counterpart"):
        export_hf(model, tok, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_bad_export_arguments(tmp_path, tok):
    model = random_model(make_config("llama"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserError, match=r"already exists and is not empty; pass overwrite=True"):
        export_hf(model, tok, tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"The destination .* is a file; pass a folder path"):
        export_hf(model, tok, tmp_path / "file")
    with pytest.raises(UserError, match=r"dtype must be one of float32, bfloat16, float16 \(got 'int8'\)"):
        export_hf(model, tok, tmp_path / "a", dtype="int8")
    with pytest.raises(UserError, match=r"needs a TransformerLM, got dict"):
        export_hf({}, tok, tmp_path / "a")
    small = random_model(make_config("llama", vocab_size=300))
    with pytest.raises(UserError, match=r"The tokenizer has 400 ids but the model only 300"):
        export_hf(small, tok, tmp_path / "a")


def test_overwrite_replaces_the_folder(tmp_path, tok):
    model = random_model(make_config("gpt2"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    export_hf(model, tok, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "stale.txt").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left


# ---------------------------------------------------------------------------------------- import


@pytest.fixture()
def llama_folder(tmp_path, tok):
    return export_hf(random_model(make_config("llama-gqa-bias")), tok, tmp_path / "llama")


@pytest.fixture()
def gpt2_folder(tmp_path, tok):
    return export_hf(random_model(make_config("gpt2")), tok, tmp_path / "gpt2")


def _edit_config(folder, **changes):  # noqa: ANN003
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model_type="mistral", architectures=["MistralForCausalLM"]), r"describes a 'mistral' model but llm_lit imports only Llama \('llama'\) and GPT-2"),
        (dict(hidden_act="gelu"), r"uses hidden_act='gelu' but llm_lit's SwiGLU uses silu"),
        (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5}), r"uses RoPE scaling of type 'llama3', which llm_lit's RoPE does not implement"),
        (dict(rope_parameters=..., rope_scaling={"type": "linear", "factor": 2.0}), r"RoPE scaling of type 'linear'"),
        (dict(mlp_bias=False), r"has attention_bias=True but mlp_bias=False; llm_lit has one bias switch"),
        (dict(head_dim=32), r"has head_dim=32 but hidden_size/num_attention_heads is 16; llm_lit needs head_dim"),
        (dict(hidden_size=...), r"lacks the key 'hidden_size' a llama config needs"),
        (dict(intermediate_size=128), r"give 'layers.0.ffn.w1.weight' shape \(192, 64\) but its config.json implies \(128, 64\)"),
        (dict(attention_bias=False, mlp_bias=False), r"weights have 14 tensor\(s\) llm_lit's model has no place for \(e.g. 'model.layers.0.mlp.down_proj.bias'\)"),
        (dict(num_hidden_layers=3), r"weights lack 16 tensor\(s\) its config.json implies \(e.g. 'model.layers.2.input_layernorm.weight'\)"),
    ],
)
def test_llama_configs_we_cannot_reproduce(llama_folder, changes, message):
    _edit_config(llama_folder, **changes)
    with pytest.raises(UserError, match=message):
        load_hf_model(llama_folder)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(activation_function="relu"), r"uses activation_function='relu', which llm_lit's GELU MLP does not implement"),
        (dict(scale_attn_by_inverse_layer_idx=True), r"scales attention other than by 1/sqrt\(head size\)"),
        (dict(add_cross_attention=True), r"has cross-attention layers"),
    ],
)
def test_gpt2_configs_we_cannot_reproduce(gpt2_folder, changes, message):
    _edit_config(gpt2_folder, **changes)
    with pytest.raises(UserError, match=message):
        load_hf_model(gpt2_folder)


def test_bad_folders(tmp_path, llama_folder):
    with pytest.raises(UserError, match=r"folder .*nowhere does not exist; pass a local folder holding config.json and the weights \(nothing is downloaded\)"):
        load_hf(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"config.json is a file; pass a local folder"):
        load_hf(llama_folder / "config.json")
    (llama_folder / "model.safetensors").rename(llama_folder / "elsewhere.safetensors")
    with pytest.raises(UserError, match=r"has no model.safetensors, pytorch_model.bin or sharded index of them"):
        load_hf(llama_folder)
    (llama_folder / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"config.json is not valid JSON"):
        load_hf(llama_folder)
    (llama_folder / "config.json").unlink()
    with pytest.raises(UserError, match=r"config.json does not exist; pass a folder saved with save_pretrained"):
        load_hf(llama_folder)


def test_unsafe_or_corrupt_pytorch_weights(gpt2_folder):
    (gpt2_folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1), "evil": Fraction(1, 2)}, gpt2_folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"holds objects other than tensors, which are not loaded for safety"):
        load_hf(gpt2_folder)
    (gpt2_folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"pytorch_model.bin is truncated or corrupt"):
        load_hf(gpt2_folder)


def test_missing_shard(gpt2_folder):
    (gpt2_folder / "model.safetensors").rename(gpt2_folder / "part-1.safetensors")
    index = {"weight_map": {"transformer.wte.weight": "part-1.safetensors", "transformer.wpe.weight": "part-2.safetensors"}}
    (gpt2_folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match=r"lists the shard part-2.safetensors, which is missing"):
        load_hf(gpt2_folder)


def test_tokenizer_larger_than_the_model(gpt2_folder):
    _edit_config(gpt2_folder, vocab_size=300)
    with pytest.raises(UserError, match=r"shape \(400, 64\) but its config.json implies \(300, 64\)"):
        load_hf(gpt2_folder)


def test_missing_tokenizer_files(gpt2_folder):
    for name in ("tokenizer.json", "vocab.json"):
        (gpt2_folder / name).unlink()
    with pytest.raises(UserError, match=r"has no tokenizer.json and no vocab.json \+ merges.txt; copy the tokenizer files"):
        load_hf(gpt2_folder)


# ---------------------------------------------------------------------------------------- tokenizer.json


def _edit_tokenizer(folder, edit):  # noqa: ANN001
    d = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    edit(d)
    (folder / "tokenizer.json").write_text(json.dumps(d), encoding="utf-8")
    return folder / "tokenizer.json"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["model"].update(type="WordPiece"), r"is a WordPiece tokenizer, not byte-level BPE"),
        (lambda d: d.update(normalizer={"type": "NFC"}), r"normalizes text first \(NFC\)"),
        (lambda d: d.update(pre_tokenizer={"type": "Metaspace"}), r"splits text with Metaspace, not GPT-2's ByteLevel regex"),
        (lambda d: d["pre_tokenizer"].update(add_prefix_space=True), r"splits text with ByteLevel, not GPT-2's ByteLevel regex without a prefix space"),
        (lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel", "use_regex": False}]}),
         r"splits text with Sequence\(Split, ByteLevel\)"),
        (lambda d: d.update(post_processor={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|endoftext|>"}}, {"Sequence": {"id": "A"}}]}),
         r"adds tokens around the text \(TemplateProcessing\)"),
        (lambda d: d.update(post_processor={"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "BertProcessing"}]}),
         r"adds tokens around the text \(Sequence\(ByteLevel, BertProcessing\)\)"),
        (lambda d: d["model"].update(continuing_subword_prefix="##"), r"sets BPE continuing_subword_prefix='##'"),
        (lambda d: d["model"].update(ignore_merges=True), r"sets ignore_merges"),
        (lambda d: d["added_tokens"][0].update(lstrip=True), r"strips spaces around the added token '<\|endoftext\|>'"),
        (lambda d: d["model"]["vocab"].pop("Ġ"), r"is not a complete byte-level BPE"),
        (lambda d: d["model"]["vocab"].update({"bad token": 999}), r"has the token 'bad token' with a character \(' '\) that is not in GPT-2's byte table"),
    ],
)
def test_tokenizer_json_we_cannot_reproduce(gpt2_folder, edit, message):
    path = _edit_tokenizer(gpt2_folder, edit)
    with pytest.raises((UserError, ValueError), match=message):
        tokenizer_from_hf_json(path)
