"""`llm_lit serve` over its life: SIGTERM stops accepting, lets running requests finish within the drain bound
(cancelling what runs past it) and exits 0; a bounded load test (16 clients, 60 s, loopback) ends with zero
5xx, an empty batch and memory back to its level before."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import time

import pytest

from llm_lit.run.checkpoint import write_checkpoint
from serve_helpers import ServerProcess, byte_tokenizer, printable_model, request, wait_until

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "tiny.ckpt"
    write_checkpoint(printable_model(), byte_tokenizer(), path)
    return path


def test_sigterm_drains_within_the_bound_and_exits_0(checkpoint):
    server = ServerProcess(["--ckpt_path", str(checkpoint), "--drain_timeout", "3",
                            "--max_new_tokens_limit", "1000000"]).wait_ready()
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)
        results: dict[str, object] = {}
        started = {name: threading.Event() for name in ("finite", "endless")}

        def read(name: str, max_tokens: int) -> None:
            text = []
            try:
                for chunk in client.completions.create(model=str(checkpoint), prompt="a", max_tokens=max_tokens,
                                                       temperature=0, stream=True):
                    started[name].set()
                    text.append(chunk.choices[0].text)
                    if max_tokens > 1000:
                        time.sleep(0.001)  # a slow reader: keeps the endless one running past the bound
                results[name] = "".join(text)
            except Exception as e:  # the endless stream is cut when the bound passes
                results[name] = e

        threads = [threading.Thread(target=read, args=("finite", 100)),
                   threading.Thread(target=read, args=("endless", 1000000))]
        for t in threads:
            t.start()
        assert all(e.wait(60) for e in started.values())
        signalled = time.monotonic()
        os.kill(server.proc.pid, signal.SIGTERM)
        assert wait_until(lambda: _refused(server.port), 2)  # no new connections once SIGTERM arrived
        assert wait_until(lambda: "llm_lit serve stopped" in server.log(), 30)
        took = time.monotonic() - signalled  # the drain; the interpreter's own teardown comes after
        code = server.proc.wait(60)
        for t in threads:
            t.join(30)
    finally:
        server.stop()
    assert code == 0, server.log()[-3000:]
    assert took < 3 + 5, took
    assert isinstance(results["finite"], str) and len(results["finite"]) == 100  # finished inside the bound
    assert isinstance(results["endless"], Exception)  # cancelled at the bound
    assert "Traceback" not in server.log()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


# ---------------------------------------------------------------------- the load test
LOAD_SECONDS = float(os.environ.get("LLM_LIT_SERVE_LOAD_SECONDS", "60"))
CLIENTS = 16


def _one_request(server: ServerProcess, client, name: str, rng: random.Random) -> int:  # noqa: ANN001
    """One random request of a load-test client; returns its HTTP status (0 for a deliberate disconnect)."""
    kind = rng.choice(["complete", "stream", "chat", "chat_stream", "bad", "disconnect"])
    max_tokens = rng.randint(1, 120)
    if kind == "bad":
        body = rng.choice([{"prompt": "x" * 40}, {"prompt": "a", "temperature": "hot"}, {"prompt": "a", "n": 3},
                           {"prompt": "a", "model": "nope"}, {"messages": []}])
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        return request(server, "POST", path, body)[0]
    if kind == "disconnect":
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        data = json.dumps({"prompt": "a", "max_tokens": 100000, "stream": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(rng.uniform(0, 0.5))
        sock.close()
        return 0
    settings = dict(max_tokens=max_tokens, temperature=rng.choice([0, 0.7, 1.0]), seed=rng.randint(0, 9))
    try:
        if kind in ("complete", "stream"):
            result = client.completions.create(model=name, prompt=rng.choice(["a", "ROMEO:", "To be"]),
                                               stream=kind == "stream", **settings)
        else:
            result = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}],
                                                    stream=kind == "chat_stream", **settings)
        if kind.endswith("stream"):
            list(result)
        return 200
    except openai.APIStatusError as e:
        return e.status_code


@pytest.mark.slow
def test_load_16_clients_zero_5xx_no_leaked_slot_memory_back(checkpoint):
    server = ServerProcess(["--ckpt_path", str(checkpoint), "--max_batch_size", "4"]).wait_ready()
    try:
        name = str(checkpoint)

        def run_clients(seconds: float) -> list[int]:
            statuses: list[int] = []
            errors: list[BaseException] = []
            deadline = time.monotonic() + seconds

            def one_client(i: int) -> None:
                rng = random.Random(i)
                client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
                try:
                    while time.monotonic() < deadline:
                        statuses.append(_one_request(server, client, name, rng))
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=one_client, args=(i,)) for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(seconds + 180)
            assert not errors, errors[:3]
            return statuses

        run_clients(5)  # warm up: every code path once, the allocator's pools filled
        assert wait_until(lambda: request(server, "GET", "/health")[1]["running"] == 0, 30)
        before = server.rss_bytes()
        statuses = run_clients(LOAD_SECONDS)
        assert wait_until(lambda: _idle(server), 30), request(server, "GET", "/health")
        after = server.rss_bytes()
        metrics = request(server, "GET", "/metrics")[1]
    finally:
        code = server.stop()
    assert not [s for s in statuses if s >= 500], sorted(set(statuses))
    assert statuses.count(200) >= LOAD_SECONDS and set(statuses) <= {0, 200, 400, 404}, sorted(set(statuses))
    assert "llm_lit_batch_occupancy 0.0" in metrics and "llm_lit_queue_depth 0.0" in metrics
    assert after <= before * 1.10 + (16 << 20), (before, after)
    assert code == 0 and "Traceback" not in server.log()


def _idle(server: ServerProcess) -> bool:
    health = request(server, "GET", "/health")[1]
    return health["running"] == 0 and health["waiting"] == 0
