"""`llm_lit serve` under load, driven over 127.0.0.1 by the official `openai` client, in one run:

* throughput: 8 requests sent at once by 8 concurrent clients (continuous batching) vs the same 8
  requests sent one after another: total generated tokens per second, greedy, no early stop
  (the same tokens either way); target ratio >= 3x;
* time to first token of a lone streamed request vs `llm_lit chat`'s (the same prompt typed into
  a running chat session; time from the line written to the first byte of its reply); target
  ratio <= 1.1x.

Both sides run as their own processes on the same checkpoint, threads and device, in alternating
rounds; figures are medians over rounds, with the paired ratios. Without `--ckpt_path` the
benchmark first trains a small model on the bundled corpus for a few steps (6 layers, d_model
384, context 512: enough that a long prompt's forward pass, not the HTTP round trip, is what a
first token costs) and reuses it on later runs.

    python benchmarks/serve_throughput.py                               # the figures (quiet machine)
    python benchmarks/serve_throughput.py --max-tokens 32 --repeats 2   # a quick check
    python benchmarks/serve_throughput.py --ckpt_path runs/x/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from report import interleaved, print_medians  # noqa: E402

CORPUS = REPO / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt"
TRAIN_FLAGS = ["--config", str(REPO / "configs" / "debug.yaml"), "--model.config.context_length", "512",
               "--model.config.d_model", "384", "--model.config.n_layers", "6", "--model.config.n_heads", "6",
               "--data.batch_size", "4", "--trainer.max_steps", "20", "--trainer.val_check_interval", "20",
               "--data.val_batch_size", "16"]


def env(threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def trained_checkpoint(work_dir: Path, threads: int) -> Path:
    """The benchmark's own small model: trained once on the bundled corpus, then reused."""
    ckpt = work_dir / "serve_bench" / "version_0" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        print(f"training the benchmark's model into {ckpt.parents[2]} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "llm_lit", "fit", *TRAIN_FLAGS, "--out_dir", str(work_dir),
                        "--run_name", "serve_bench", "--torch_threads", str(threads)],
                       env=env(threads), check=True, stdout=subprocess.DEVNULL)
    return ckpt


class Server:
    """`llm_lit serve` on a free loopback port, stopped by its PID."""

    def __init__(self, ckpt: Path, threads: int, device: str, batch: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_lit", "serve", "--ckpt_path", str(ckpt), "--port", "0", "--model_name", "m",
             "--torch_threads", str(threads), "--device", device, "--max_batch_size", str(batch),
             "--max_new_tokens_limit", "100000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(threads))
        self.url: Optional[str] = None
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                found = re.search(r" on (http://[\d.]+:\d+/v1)$", line.strip())
                if found:
                    self.url = found.group(1)
                    ready.set()
                if " ERROR " in line or line.startswith("error:"):
                    print("server:", line.rstrip(), file=sys.stderr)

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(600):
            raise SystemExit("the server did not start")
        time.sleep(0.5)  # uvicorn listens right after printing the address

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(120)


class Chat:
    """A running `llm_lit chat` session with greedy one-token replies, timed to the first byte of each."""

    def __init__(self, ckpt: Path, threads: int, device: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_lit", "chat", "--ckpt_path", str(ckpt), "--temperature", "0",
             "--max_new_tokens", "1", "--device", device],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env(threads), bufsize=0)
        self.ttft("warm up")

    def ttft(self, prompt: str) -> float:
        """Seconds from writing `prompt` (after /reset, so the context is the prompt alone) to its first byte."""
        self.proc.stdin.write(b"/reset\n")
        started = time.perf_counter()
        self.proc.stdin.write(prompt.encode() + b"\n")
        first = os.read(self.proc.stdout.fileno(), 1)
        took = time.perf_counter() - started
        reply = first
        while not reply.endswith(b"\n"):
            reply += os.read(self.proc.stdout.fileno(), 4096)
        return took

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(120)


def prompts_of(ckpt: Path, ttft_tokens: int, clients: int) -> tuple[str, list[str], list[int]]:
    """A one-line prompt of about `ttft_tokens` tokens, `clients` shorter ones of different lengths (16, 32, ...
    tokens at most), and the token counts of those."""
    from llm_lit.run.loading import load_for_generation

    _, tokenizer = load_for_generation(str(ckpt), "cpu")
    words = " ".join(CORPUS.read_text(encoding="utf-8").split()[:20000]).split(" ")

    def of_tokens(start: int, n: int) -> str:
        text = ""
        for word in words[start:]:
            if len(tokenizer.encode(text + " " + word)) > n:
                break
            text = (text + " " + word).strip()
        return text

    prompts = [of_tokens(1000 + 300 * i, 16 + 16 * i) for i in range(clients)]
    return of_tokens(0, ttft_tokens), prompts, [len(tokenizer.encode(p)) for p in prompts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", help="serve this checkpoint (default: train the benchmark's own)")
    parser.add_argument("--work-dir", default=str(REPO / "runs"), help="where the benchmark's own model is trained")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request (throughput)")
    parser.add_argument("--ttft-prompt-tokens", type=int, default=480, help="prompt length of the first-token timing")
    parser.add_argument("--ttft-samples", type=int, default=5, help="first-token timings per round and side")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (alternating which side runs first)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server and of chat")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import openai

    ckpt = Path(args.ckpt_path) if args.ckpt_path else trained_checkpoint(Path(args.work_dir), args.threads)
    long_prompt, prompts, lengths = prompts_of(ckpt, args.ttft_prompt_tokens, args.clients)
    server = Server(ckpt, args.threads, args.device, batch=args.clients)
    chat = Chat(ckpt, args.threads, args.device)
    client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=600)
    try:
        def one(prompt: str) -> int:
            result = client.completions.create(model="m", prompt=prompt, max_tokens=args.max_tokens, temperature=0)
            return result.usage.completion_tokens

        def sequential() -> float:
            started = time.perf_counter()
            tokens = sum(one(p) for p in prompts)
            return tokens / (time.perf_counter() - started)

        def concurrent() -> float:
            counts = [0] * len(prompts)
            barrier = threading.Barrier(len(prompts) + 1)

            def run(i: int) -> None:
                barrier.wait()
                counts[i] = one(prompts[i])

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
            for t in threads:
                t.start()
            barrier.wait()
            started = time.perf_counter()
            for t in threads:
                t.join()
            return sum(counts) / (time.perf_counter() - started)

        def serve_ttft() -> float:
            samples = []
            for _ in range(args.ttft_samples):
                started = time.perf_counter()
                for chunk in client.completions.create(model="m", prompt=long_prompt, max_tokens=1, temperature=0,
                                                       stream=True):
                    if chunk.choices and chunk.choices[0].text:
                        samples.append(time.perf_counter() - started)
                        break
            return sorted(samples)[len(samples) // 2]

        def chat_ttft() -> float:
            samples = [chat.ttft(long_prompt) for _ in range(args.ttft_samples)]
            return sorted(samples)[len(samples) // 2]

        one(prompts[0]), serve_ttft()  # warm up
        prompt_tokens = client.completions.create(model="m", prompt=long_prompt, max_tokens=1).usage.prompt_tokens
        throughput = interleaved({f"serve, {args.clients} concurrent clients": concurrent,
                                  f"serve, the {args.clients} requests one after another": sequential},
                                 args.repeats, alternate=True)
        ttft = interleaved({"serve (openai client, streamed)": serve_ttft, "chat": chat_ttft}, args.repeats,
                           alternate=True)
    finally:
        chat.stop()
        server.stop()

    print(f"{ckpt}: torch threads {args.threads}, {args.device}, {args.repeats} alternating rounds, medians")
    print(f"throughput: {args.clients} greedy requests of {args.max_tokens} new tokens "
          f"(prompts of {min(lengths)}-{max(lengths)} tokens), total tokens/s (target >= 3x):")
    print_medians(throughput, references=[f"serve, the {args.clients} requests one after another"], unit="tokens/s",
                  show_runs=True)
    print(f"time to first token, a lone request of a {prompt_tokens}-token prompt, median of {args.ttft_samples} "
          "per round (target <= 1.1x):")
    print_medians(ttft, references=["chat"], unit="ms", scale=1000, show_runs=True)


if __name__ == "__main__":
    main()
