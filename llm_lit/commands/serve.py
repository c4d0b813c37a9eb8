"""`llm_lit serve`: a checkpoint behind an OpenAI-compatible HTTP endpoint, with continuous batching.

    llm_lit serve --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt --port 8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"prompt": "ROMEO:", "max_tokens": 50, "temperature": 0}'

Any checkpoint `chat` accepts (an llm_lit .ckpt, a folder written by `llm_lit import`, a Hugging
Face folder) is loaded once; requests to /v1/completions and /v1/chat/completions share its
forward passes (see `llm_lit.generation.batch_engine`). docs/serve.md says everything else.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Literal, Optional

import torch

from llm_lit.commands.parsing import run_function
from llm_lit.errors import UserError

#: The packages of the `serve` extra.
SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client", "jinja2")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def require_serve_extra() -> None:
    """`UserError` naming the install command when a package of the `serve` extra is missing."""
    missing = [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"llm_lit serve needs the 'serve' extra ({', '.join(missing)} missing); "
                        "pip install 'llm_lit[serve]'.")


def serve(ckpt_path: str, host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 8,
          max_new_tokens_limit: int = 2048, api_key: Optional[str] = None,
          truncate: Literal["error", "left"] = "error", model_name: Optional[str] = None,
          chat_template: Optional[str] = None, device: str = "auto",
          dtype: Literal["float32", "bfloat16", "float16"] = "float32", prefill_chunk: int = 512,
          max_queue: int = 1024, drain_timeout: float = 30.0, torch_threads: Optional[int] = None) -> None:
    """Serve a model behind an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).

    Args:
        ckpt_path: An llm_lit checkpoint (.ckpt written by fit), a folder written by llm_lit import, or a Hugging Face model folder.
        host: Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).
        port: Port to listen on (0: any free port, printed at start).
        max_batch_size: Requests generated together at most (KV-cache slots); more wait in a queue.
        max_new_tokens_limit: The most tokens one request may ask for (max_tokens above it is refused with 400).
        api_key: Require 'Authorization: Bearer <key>' on /v1 requests (default: the LLM_LIT_API_KEY environment variable; unset: no key).
        truncate: A prompt longer than the context: 'error' refuses it (400), 'left' keeps its last context_length tokens.
        model_name: The model id clients send and /v1/models lists (default: ckpt_path as given).
        chat_template: A Jinja chat template file for /v1/chat/completions (default: the Hugging Face folder's own, else a plain 'Role: text' transcript).
        device: 'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'.
        dtype: Weights and KV cache dtype: 'float32', 'bfloat16' or 'float16' (the halves on a GPU).
        prefill_chunk: Prompt tokens fed through the model per engine step at most (a longer prompt takes several steps, so it never stalls the running batch for long).
        max_queue: Requests waiting for a slot at most; more are refused with 429.
        drain_timeout: Seconds that SIGTERM (or Ctrl-C) lets running requests finish before cancelling them; then the server exits 0.
        torch_threads: Threads torch uses on the CPU (default: torch's choice).
    """
    require_serve_extra()
    _check_settings(port, max_new_tokens_limit, drain_timeout, torch_threads)
    from llm_lit.generation.batch_engine import BatchEngine
    from llm_lit.generation.chat_format import ChatFormat, read_chat_template
    from llm_lit.run.loading import load_for_generation, model_source
    from llm_lit.serving.app import build_app
    from llm_lit.serving.host import ServedModel
    from llm_lit.serving.server import listening_socket, run_server

    if torch_threads:
        torch.set_num_threads(torch_threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    template = _read_template(chat_template) if chat_template else read_chat_template(model_source(ckpt_path))
    sock = listening_socket(host, port)  # before loading: a taken port is said at once
    try:
        model, tokenizer = load_for_generation(ckpt_path, device)
        model = model.to(DTYPES[dtype])
        engine = BatchEngine(model, max_batch_size=max_batch_size, prefill_chunk=prefill_chunk, max_queue=max_queue)
        served = ServedModel(model, tokenizer, model_name or ckpt_path, engine,
                             ChatFormat.for_model(tokenizer, template), max_new_tokens_limit, truncate == "left")
        api_key = api_key if api_key is not None else os.environ.get("LLM_LIT_API_KEY") or None
        bound_host, bound_port = sock.getsockname()[:2]
        params = sum(p.numel() for p in model.parameters())
        logging.getLogger("llm_lit.serve").info(
            f"serving {served.name} ({params / 1e6:,.2f}M parameters, context {served.context_length} tokens, "
            f"{model.token_embeddings.weight.device}, {dtype}, {max_batch_size} slots, "
            f"{engine.cache.nbytes() / 2**20:,.1f} MiB KV cache, chat: {'template' if template else 'transcript'}"
            f"{', API key required' if api_key else ''}) on http://{bound_host}:{bound_port}/v1")
        run_server(build_app(served, api_key=api_key), sock, drain_timeout)
    finally:
        sock.close()


def _check_settings(port: int, max_new_tokens_limit: int, drain_timeout: float, torch_threads: Optional[int]) -> None:
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in [0, 65535] (got {port}); pass e.g. --port 8000.")
    if max_new_tokens_limit < 1:
        raise UserError(f"--max_new_tokens_limit must be a positive number of tokens (got {max_new_tokens_limit}); "
                        "pass e.g. 2048.")
    if drain_timeout < 0:
        raise UserError(f"--drain_timeout must be >= 0 seconds (got {drain_timeout}); pass e.g. 30.")
    if torch_threads is not None and torch_threads < 1:
        raise UserError(f"--torch_threads must be a positive integer (got {torch_threads}); pass e.g. 1.")


def _read_template(path: str) -> str:
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--chat_template {path} cannot be read ({e}); pass a UTF-8 Jinja template file.") from None


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit serve ARGS`; Ctrl-C while the model loads exits with 130, without a traceback."""
    try:
        return run_function("llm_lit serve", serve, argv)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
