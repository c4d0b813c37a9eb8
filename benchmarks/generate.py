"""Generation speed, batch 1, greedy: KV-cached vs full recompute vs Hugging Face `generate`.

Same shape as the training benchmark (Llama preset: 6 layers, 6 heads, d_model 384, context
256, vocab 8192), random weights. Hugging Face runs `LlamaForCausalLM` with an equivalent
`LlamaConfig` (no download), `do_sample=False`, a fixed number of new tokens and no EOS.
Variants are timed in interleaved rounds; medians of new tokens/s are printed.

    python benchmarks/generate.py [--new-tokens 256] [--prompt-len 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_lit.generation.sampling import SamplingConfig, generate  # noqa: E402
from llm_lit.model import ModelConfig, TransformerLM  # noqa: E402
from report import interleaved, print_medians, seconds  # noqa: E402


def hf_model(config: ModelConfig):  # noqa: ANN201 - transformers is a test-only dependency
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    hf_config = LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.d_ff,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads, num_key_value_heads=config.n_kv_heads,
        max_position_embeddings=config.context_length, rms_norm_eps=config.norm_eps, rope_theta=config.rope_theta,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=0,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(hf_config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-hf", action="store_true", help="do not time Hugging Face transformers")
    args = parser.parse_args()

    config = ModelConfig.llama(vocab_size=8192, context_length=256, d_model=384, n_layers=6, n_heads=6)
    torch.manual_seed(0)
    ours = TransformerLM(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt_len))
    n = args.new_tokens

    def run_ours(use_cache: bool) -> int:
        out = generate(ours, [prompt[0].tolist()], SamplingConfig(max_new_tokens=n, temperature=0, use_cache=use_cache))
        return len(out[0])

    variants = {"ours KV-cached": lambda: run_ours(True), "ours recompute (no cache)": lambda: run_ours(False)}
    if not args.skip_hf:
        hf = hf_model(config)

        def run_hf() -> int:
            with torch.inference_mode():
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=0)
            return out.shape[1] - prompt.shape[1]

        variants["hf transformers generate"] = run_hf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn in variants.values():  # warm-up (and check every variant makes n tokens)
            assert fn() == n
        rates = interleaved({name: (lambda fn=fn: n / seconds(fn)) for name, fn in variants.items()}, args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1, prompt {args.prompt_len} tokens, "
          f"{n} new tokens, 6L/6H/d384/ctx256/vocab8192 llama, {args.repeats} repeats")
    print_medians(rates, references=["ours recompute (no cache)", "hf transformers generate"], unit="tokens/s")


if __name__ == "__main__":
    main()
