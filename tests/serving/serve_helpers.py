"""Helpers of the server tests: a small model that writes printable text, a server process on a free loopback
port (stopped by its PID), and plain HTTP requests whose every byte the test controls."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import torch

from cli_helpers import cli_env
from llm_lit.model import ModelConfig, TransformerLM
from tokenizer import Tokenizer

CONFIG = dict(vocab_size=257, context_length=32, d_model=32, n_layers=2, n_heads=2)
PRINTABLE = [10, *range(32, 127)]


def byte_tokenizer() -> Tokenizer:
    """Bytes, plus <pad>: no EOS and no <|endoftext|>, so only max_tokens and stop strings end a reply."""
    return Tokenizer({b: bytes([b]) for b in range(256)}, [], ["<pad>"])


def printable_model(seed: int = 0) -> TransformerLM:
    """A random model whose next token is always printable ASCII (or a newline), with logits far from ties.

    Every token's embedding carries 0.05 in feature 0 and no block writes to that feature, so after the
    final RMSNorm it is positive at every position; the output rows of the other ids weigh it by -1e4.
    """
    torch.manual_seed(seed)
    model = TransformerLM(ModelConfig(**CONFIG)).eval()
    with torch.no_grad():
        model.token_embeddings.weight[:, 0] = 0.05
        for block in model.layers:
            block.attn.output_proj.weight[0] = 0
            block.ffn.w2.weight[0] = 0
        head = model.lm_head.weight
        head.mul_(20)
        other = torch.ones(head.shape[0], dtype=torch.bool)
        other[PRINTABLE] = False
        head[other, 0] = -1e4
    return model


class ServerProcess:
    """`python -m llm_lit serve ARGS --port 0` in a subprocess; its stderr lines are collected as they come.

    `url` is `http://127.0.0.1:PORT` once the server said where it listens; `stop()` sends SIGTERM to
    its PID and waits (SIGKILL past `timeout`).
    """

    def __init__(self, args: list[str], env: Optional[dict[str, str]] = None, cwd: Optional[Path] = None) -> None:
        full_env = {**cli_env(), "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "llm_lit", "serve", *args, "--port", "0",
                                      "--torch_threads", "1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=full_env, cwd=cwd)
        self.lines: list[str] = []
        self.url: Optional[str] = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            found = re.search(r" on (http://[\d.]+:\d+)/v1$", line.strip())
            if found:
                self.url = found.group(1)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(self, timeout: float = 240) -> "ServerProcess":
        """Wait until /health answers 200; AssertionError (with the log) if the server ends or never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.url is not None:
                try:
                    if request(self, "GET", "/health")[0] == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError("the server did not start:\n" + self.log())

    def log(self) -> str:
        return "\n".join(self.lines)

    def access_lines(self, port: int) -> list[str]:
        """The access-log lines of requests sent from local port `port`."""
        return [line for line in self.lines if f"127.0.0.1:{port} \"" in line]

    def rss_bytes(self) -> int:
        """The server process's resident memory."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM by PID, then wait; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


def request(server: ServerProcess, method: str, path: str, body: Any = None, headers: Optional[dict] = None,
            raw: Optional[bytes] = None, timeout: float = 60) -> tuple[int, Any, int]:
    """Send one request; returns `(status, parsed JSON body or text, local port)` (the port finds its log line)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        port = conn.sock.getsockname()[1]
        response = conn.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text), port
        except json.JSONDecodeError:
            return response.status, text, port
    finally:
        conn.close()


def wait_until(condition, timeout: float = 10.0) -> bool:  # noqa: ANN001 - any callable
    """Poll `condition()` until true or `timeout` seconds; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())
