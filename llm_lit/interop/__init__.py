"""Interop with the Hugging Face layouts: export to and import from `LlamaForCausalLM` / `GPT2LMHeadModel`.

    from llm_lit.interop import export_hf, load_hf
    export_hf(model, tokenizer, "hf_model/")        # transformers: AutoModelForCausalLM.from_pretrained("hf_model/")
    model, tokenizer = load_hf("hf_model/")         # back into TransformerLM + Tokenizer

From the command line: `llm_lit export --ckpt_path X --output DIR` writes the folder, and
`llm_lit import --hf_dir DIR --output OUT` writes `OUT/model.ckpt` + `OUT/config.yaml` from
which `llm_lit fit --config ... --config OUT/config.yaml --ckpt_path OUT/model.ckpt` fine-tunes.

`llm_lit.run.init_from.load_pretrained` reads either an HF folder or an llm_lit checkpoint.
Weights are stored with our own safetensors reader/writer (`safetensors_io`), so neither
direction needs `transformers` or `safetensors` installed.
"""

from llm_lit.interop.export import export_hf, hf_layout
from llm_lit.interop.hf_tokenizer import load_hf_tokenizer, tokenizer_from_hf_json
from llm_lit.interop.load import load_hf, load_hf_model, read_hf_config, read_hf_weights

__all__ = [
    "export_hf", "hf_layout", "load_hf", "load_hf_model", "load_hf_tokenizer", "read_hf_config", "read_hf_weights", "tokenizer_from_hf_json",
]
