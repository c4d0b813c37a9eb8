"""`llm_lit serve` end to end: the official `openai` client against a server started on a free loopback port
(stopped by its PID), completions and chat, streamed and not; greedy text equal to `predict`'s; concurrent
requests equal to each alone; every bad request a 4xx with OpenAI's error JSON and one log line; a disconnect
frees the slot; the API key; a Hugging Face folder's chat template; metrics."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from llm_lit.commands.cli import main
from llm_lit.interop.export import export_hf
from llm_lit.run.checkpoint import write_checkpoint
from serve_helpers import ServerProcess, byte_tokenizer, printable_model, request, wait_until

openai = pytest.importorskip("openai")

NAME = "tiny"
PROMPT = "ROMEO:"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "tiny.ckpt"
    write_checkpoint(printable_model(), byte_tokenizer(), path)
    return path


@pytest.fixture(scope="module")
def server(checkpoint):
    proc = ServerProcess(["--ckpt_path", str(checkpoint), "--model_name", NAME, "--max_batch_size", "4",
                          "--max_new_tokens_limit", "100000", "--prefill_chunk", "8"])
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def complete(client, **kwargs):  # noqa: ANN001, ANN003
    return client.completions.create(model=NAME, **{"prompt": PROMPT, "temperature": 0, **kwargs})


# ---------------------------------------------------------------------- the openai client
def test_completions_whole_and_streamed_agree(client):
    whole = complete(client, max_tokens=20)
    choice = whole.choices[0]
    assert len(choice.text) == 20 and choice.finish_reason == "length" and whole.model == NAME
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (6, 20, 26)
    chunks = list(complete(client, max_tokens=20, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert len({c.id for c in chunks}) == 1


def test_stop_strings_cut_the_text_whole_and_streamed(client):
    text = complete(client, max_tokens=20).choices[0].text
    stop = text[8:10]
    cut = complete(client, max_tokens=20, stop=[stop, "never"])
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = list(complete(client, max_tokens=20, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_logprobs_of_completions(client):
    result = complete(client, max_tokens=6, logprobs=3).choices[0]
    lp = result.logprobs
    assert "".join(lp.tokens) == result.text and lp.text_offset == list(range(6))
    assert all(v <= 0 for v in lp.token_logprobs)
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and max(top.values()) == pytest.approx(logprob)  # greedy: the chosen is the likeliest
        assert top[token] == pytest.approx(logprob)


def test_seeded_sampling_repeats(client):
    first = complete(client, max_tokens=12, temperature=1.0, top_p=0.9, extra_body={"top_k": 40}, seed=3)
    again = complete(client, max_tokens=12, temperature=1.0, top_p=0.9, extra_body={"top_k": 40}, seed=3)
    assert first.choices[0].text == again.choices[0].text != complete(client, max_tokens=12).choices[0].text


def test_chat_whole_and_streamed_with_the_plain_transcript(client):
    messages = [{"role": "system", "content": "X"}, {"role": "user", "content": "Hi"}]
    whole = client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, temperature=0)
    message = whole.choices[0].message
    assert message.role == "assistant" and whole.object == "chat.completion"
    transcript = "System: X\nUser: Hi\nAssistant:"
    assert whole.usage.prompt_tokens == len(transcript.encode())
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    # the same text as the completion of the transcript, cut where a new user line would begin
    raw = complete(client, prompt=transcript, max_tokens=10).choices[0].text
    assert message.content == raw.split("\nUser:")[0]


def test_chat_logprobs(client):
    reply = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                           temperature=0, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert "".join(c.token for c in content) == reply.choices[0].message.content
    assert all(len(c.top_logprobs) == 2 and c.top_logprobs[0].logprob == pytest.approx(c.logprob) for c in content)


def test_models_health_and_metrics(client, server):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    status, body, _ = request(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["max_batch_size"] == 4
    status, text, _ = request(server, "GET", "/metrics")
    for name in ("llm_lit_requests_total", "llm_lit_prompt_tokens_total", "llm_lit_completion_tokens_total",
                 "llm_lit_queue_depth", "llm_lit_batch_occupancy", "llm_lit_time_to_first_token_seconds_bucket",
                 "llm_lit_request_duration_seconds_count", "llm_lit_batch_slots 4.0"):
        assert name in text, name
    assert 'llm_lit_requests_total{endpoint="/v1/completions",status="200"}' in text


# ---------------------------------------------------------------------- what a request computes
def test_greedy_text_equals_predict(client, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "predictions.jsonl"
    code = main(["predict", "--ckpt_path", str(checkpoint), "--data.prompts", json.dumps([PROMPT]),
                 "--model.sampling.temperature", "0", "--model.sampling.max_new_tokens", "40",
                 "--data.predictions_path", str(out), "--trainer.accelerator", "cpu"])
    assert code == 0, capsys.readouterr().err
    predicted = json.loads(out.read_text().splitlines()[0])
    served = complete(client, max_tokens=40).choices[0]  # 6 + 40 > context 32: the window slides in both
    assert served.text == predicted["completion"] and len(served.text) == predicted["num_tokens"] == 40


def test_concurrent_requests_of_different_lengths_equal_each_alone(client):
    jobs = [dict(prompt="a", max_tokens=40, logprobs=5), dict(prompt="To be, or not", max_tokens=9, logprobs=5),
            dict(prompt=PROMPT, max_tokens=25, temperature=0.8, seed=11, logprobs=5)]
    alone = [complete(client, **job).choices[0] for job in jobs]
    together: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        together[i] = complete(client, **jobs[i]).choices[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for a, b in zip(alone, together):
        assert a.text == b.text
        assert max(abs(x - y) for x, y in zip(a.logprobs.token_logprobs, b.logprobs.token_logprobs)) <= 1e-5
        for ta, tb in zip(a.logprobs.top_logprobs, b.logprobs.top_logprobs):
            assert ta.keys() == tb.keys() and max(abs(ta[k] - tb[k]) for k in ta) <= 1e-5


# ---------------------------------------------------------------------- bad requests: 4xx, OpenAI's shape, one line
LONG = "x" * 40  # 40 tokens, more than the context of 32

BAD = [
    ("POST", "/v1/completions", b'{"prompt": "a", ', 400, None, "invalid_json", "not valid JSON"),
    ("POST", "/v1/completions", b'[1, 2]', 400, None, "invalid_json", "not an object"),
    ("POST", "/v1/completions", {"max_tokens": 3}, 400, "prompt", "missing_field", "'prompt' is required"),
    ("POST", "/v1/completions", {"prompt": "a", "temperature": "hot"}, 400, "temperature", "invalid_field",
     "'temperature' is invalid"),
    ("POST", "/v1/completions", {"prompt": "a", "max_tokens": -1}, 400, "max_tokens", "invalid_field",
     "greater than or equal to 0"),
    ("POST", "/v1/completions", {"prompt": {"a": 1}}, 400, "prompt", "invalid_field", "wrong type"),
    ("POST", "/v1/completions", {"prompt": "a", "top_p": 1.5}, 400, "top_p", "invalid_field", "'top_p' is invalid"),
    ("POST", "/v1/completions", {"prompt": LONG}, 400, "prompt", "context_length_exceeded",
     "40 tokens long, more than the model's context of 32"),
    ("POST", "/v1/completions", {"prompt": [1, 300]}, 400, "prompt", None, "outside [0, 257)"),
    ("POST", "/v1/completions", {"prompt": "a", "max_tokens": 100001}, 400, "max_tokens", "max_tokens_exceeded",
     "limit of 100000"),
    ("POST", "/v1/completions", {"prompt": "a", "model": "gpt-4"}, 404, "model", "model_not_found",
     "The model 'gpt-4' does not exist"),
    ("POST", "/v1/completions", {"prompt": "a", "n": 2}, 400, "n", "unsupported_parameter", "one choice"),
    ("POST", "/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt", "unsupported_parameter", "one prompt"),
    ("POST", "/v1/completions", {"prompt": "a", "echo": True}, 400, "echo", "unsupported_parameter", "echo"),
    ("POST", "/v1/completions", {"prompt": "a", "logprobs": 9}, 400, "logprobs", "invalid_field", "logprobs"),
    ("POST", "/v1/completions", {"prompt": "a", "stop": [""]}, 400, "stop", None, "empty string"),
    ("POST", "/v1/completions", {"prompt": "a", "seed": 2**64}, 400, "seed", "invalid_field", "'seed' is invalid"),
    ("POST", "/v1/chat/completions", {"messages": []}, 400, "messages", "invalid_field", "'messages' is invalid"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role",
     "invalid_field", "'messages.0.role' is invalid"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages.0.content", "unsupported_content", "text parts only"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}]}, 400, "messages",
     "context_length_exceeded", "more than the model's context"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "x"}]},
     400, "tools", "unsupported_parameter", "tools"),
    ("GET", "/v1/completions", None, 405, None, None, "does not take GET"),
    ("GET", "/v2/anything", None, 404, None, None, "There is no endpoint /v2/anything"),
    ("GET", "/v1/models/other", None, 404, "model", "model_not_found", "'other' does not exist"),
]


@pytest.mark.parametrize("method, path, body, status, param, code, message", BAD,
                         ids=[f"{b[1]}-{b[6][:24]}" for b in BAD])
def test_every_bad_request_is_a_4xx_with_openai_error_json_and_one_log_line(server, method, path, body, status,
                                                                               param, code, message):
    raw = body if isinstance(body, bytes) else None
    got, answer, port = request(server, method, path, body=None if raw else body, raw=raw)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert message in error["message"] and "Traceback" not in error["message"]
    assert (error["param"], error["code"]) == (param, code)
    assert wait_until(lambda: len(server.access_lines(port)) == 1, 5), server.log()[-2000:]
    line = server.access_lines(port)[0]
    assert f'"{method} {path}" {status}' in line and json.dumps(error["message"]) in line


def test_the_openai_client_raises_its_own_error_types(client):
    with pytest.raises(openai.BadRequestError, match="context of 32 tokens"):
        complete(client, prompt=LONG)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="other", prompt="a")


def test_an_oversized_body_is_413(server):
    status, answer, _ = request(server, "POST", "/v1/completions", raw=b'{"prompt": "' + b"a" * (8 << 20) + b'"}')
    assert status == 413 and answer["error"]["code"] == "request_too_large"


# ---------------------------------------------------------------------- clients that go away
def _open_stream(server: ServerProcess, body: dict) -> tuple[socket.socket, int]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock, sock.getsockname()[1]


def _running(server: ServerProcess) -> int:
    return request(server, "GET", "/health")[1]["running"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_slot(server, stream):
    sock, port = _open_stream(server, {"prompt": "a", "max_tokens": 100000, "stream": stream})
    assert wait_until(lambda: _running(server) == 1, 10)
    if stream:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
    assert wait_until(lambda: _running(server) == 0, 5)
    assert wait_until(lambda: len(server.access_lines(port)) == 1, 5)
    assert "client_disconnected" in server.access_lines(port)[0]
    assert len(complete(openai.OpenAI(base_url=server.url + "/v1", api_key="x"), max_tokens=3).choices[0].text) == 3


# ---------------------------------------------------------------------- API key, Hugging Face folder, chat template
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'][0] }}>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<a>{% endif %}")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "hf"
    export_hf(printable_model(), byte_tokenizer(), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))
    proc = ServerProcess(["--ckpt_path", str(folder), "--truncate", "left", "--max_batch_size", "2"],
                         env={"LLM_LIT_API_KEY": "s3cret"})
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def test_api_key_is_required_on_v1_only(keyed_server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        status, answer, port = request(keyed_server, "POST", "/v1/completions", {"prompt": "a"}, headers=headers)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
        assert "Bearer <key>" in answer["error"]["message"]
    assert request(keyed_server, "GET", "/v1/models")[0] == 401
    assert request(keyed_server, "GET", "/health")[0] == 200 and request(keyed_server, "GET", "/metrics")[0] == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="s3cret", max_retries=0)
    assert good.models.list().data[0].max_model_len == 32


def test_hf_folder_chat_template_and_left_truncation(keyed_server):
    client = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="s3cret", max_retries=0)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                           temperature=0)
    assert reply.usage.prompt_tokens == len("<u>Hi<a>")  # the template's rendering, a byte a token
    long = client.completions.create(model=model, prompt="y" * 50 + "ROMEO:", max_tokens=5, temperature=0)
    short = client.completions.create(model=model, prompt="y" * 26 + "ROMEO:", max_tokens=5, temperature=0)
    assert long.usage.prompt_tokens == 32 and long.choices[0].text == short.choices[0].text


# ---------------------------------------------------------------------- the command's own errors
def test_missing_extra_is_one_line_naming_the_install(monkeypatch, capsys, checkpoint):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["serve", "--ckpt_path", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: llm_lit serve needs the 'serve' extra (fastapi missing); pip install 'llm_lit[serve]'."


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port must be in [0, 65535]"),
    (["--max_new_tokens_limit", "0"], "--max_new_tokens_limit must be a positive number"),
    (["--drain_timeout", "-1"], "--drain_timeout must be >= 0"),
    (["--truncate", "right"], "truncate"),
    (["--device", "gpu"], "--device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--chat_template", "/nonexistent/t.jinja"], "--chat_template /nonexistent/t.jinja cannot be read"),
    (["--max_batch_size", "0", "--port", "0"], "max_batch_size must be a positive integer"),
])
def test_bad_settings_are_one_line(capsys, checkpoint, args, message):
    assert main(["serve", "--ckpt_path", str(checkpoint), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_a_taken_port_and_a_missing_checkpoint_are_one_line(capsys, checkpoint, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--ckpt_path", str(checkpoint), "--port", str(port)]) == 2
        assert f"Cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", "--ckpt_path", str(tmp_path / "none.ckpt"), "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
