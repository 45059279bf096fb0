"""The OpenAI-compatible HTTP API of a real `kvasir serve`, driven by the official `openai` client
(and httpx for what that client hides: raw statuses, headers, broken bodies, disconnects)."""
import json
import signal
import socket

import httpx
import openai
import pytest

from http_util import metric, own_http_server, sse_events, wait_until

STORY = "Once upon a time, in a small village,"


@pytest.fixture(scope="module")
def url(server):
    return server.http_url


@pytest.fixture(scope="module")
def model(url):
    models = httpx.get(f"{url}/v1/models", timeout=10).json()
    assert models["object"] == "list" and len(models["data"]) == 1
    return models["data"][0]["id"]


@pytest.fixture(scope="module")
def client(url):
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                       timeout=300) as c:
        yield c


def stream_texts(stream):
    """Concatenated text per choice index, finish reasons, and the chunks of a stream."""
    texts, finish, chunks = {}, {}, []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            piece = choice.text if hasattr(choice, "text") else (choice.delta.content or "")
            texts[choice.index] = texts.get(choice.index, "") + piece
            if choice.finish_reason is not None:
                finish[choice.index] = choice.finish_reason
    return texts, finish, chunks


# --- probes -----------------------------------------------------------------------------------

def test_health_ready_models_and_metrics(url, model):
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/ready").status_code == 200
    assert model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    m = httpx.get(f"{url}/metrics")
    assert m.status_code == 200
    assert m.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'kvasir_http_requests_total{method="GET",path="/health",code="200"}' in m.text
    assert "kvasir_model_info{" in m.text


# --- completions and chat through the official client -----------------------------------------

def test_completion_non_streamed(client, model):
    r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert r.object == "text_completion" and r.model == model and r.id.startswith("cmpl-")
    assert len(r.choices) == 1 and r.choices[0].index == 0
    assert r.choices[0].text and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_completion_default_max_tokens_is_16(client, model):
    r = client.completions.create(model=model, prompt=STORY, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16


def test_seeded_completion_stream_equals_non_streamed(client, model):
    fields = dict(model=model, prompt=STORY, max_tokens=32, temperature=0.9, top_p=0.95, seed=1234)
    whole = client.completions.create(**fields)
    texts, finish, _ = stream_texts(client.completions.create(stream=True, **fields))
    assert texts == {0: whole.choices[0].text}
    assert finish == {0: whole.choices[0].finish_reason}
    # The seed decides the samples: another seed gives another text (32 sampled tokens).
    other = client.completions.create(**{**fields, "seed": 4321})
    assert other.choices[0].text != whole.choices[0].text


def test_seeded_chat_stream_equals_non_streamed(client, model):
    fields = dict(model=model, messages=[{"role": "system", "content": "You are brief."},
                                         {"role": "user", "content": "Name three colours."}],
                  max_completion_tokens=24, temperature=0.8, seed=7)
    whole = client.chat.completions.create(**fields)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    message = whole.choices[0].message
    assert message.role == "assistant" and message.content
    stream = client.chat.completions.create(stream=True, **fields)
    texts, finish, chunks = stream_texts(stream)
    assert texts == {0: message.content}
    assert finish == {0: whole.choices[0].finish_reason}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_renders_the_models_template(client, model):
    # The chat template wraps the user turn; the same text as a raw prompt is another prompt.
    content = "What is 2 + 2?"
    chat = client.chat.completions.create(model=model, messages=[{"role": "user",
                                                                  "content": content}],
                                          max_tokens=1, temperature=0)
    raw = client.completions.create(model=model, prompt=content, max_tokens=1, temperature=0)
    assert chat.usage.prompt_tokens > raw.usage.prompt_tokens + 5
    # Content parts are joined like a plain string.
    parts = client.chat.completions.create(
        model=model, max_tokens=1, temperature=0,
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is "},
                                               {"type": "text", "text": "2 + 2?"}]}])
    assert parts.usage.prompt_tokens == chat.usage.prompt_tokens
    assert parts.choices[0].message.content == chat.choices[0].message.content


def test_n_choices_streamed_and_not(client, model):
    fields = dict(model=model, prompt=STORY, max_tokens=12, temperature=1.0, seed=99, n=2,
                  extra_body={"ignore_eos": True})
    whole = client.completions.create(**fields)
    assert [c.index for c in whole.choices] == [0, 1]
    assert whole.choices[0].text != whole.choices[1].text
    assert whole.usage.completion_tokens == 24
    texts, finish, _ = stream_texts(client.completions.create(stream=True, **fields))
    assert texts == {0: whole.choices[0].text, 1: whole.choices[1].text}
    assert finish == {0: "length", 1: "length"}


def test_completion_logprobs_are_consistent(client, model):
    r = client.completions.create(model=model, prompt=STORY, max_tokens=10, temperature=0,
                                  logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 10
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0
    for i, (token, logprob, top) in enumerate(zip(lp.tokens, lp.token_logprobs, lp.top_logprobs)):
        assert logprob <= 0.0
        assert 1 <= len(top) <= 3
        # Greedy: the chosen token is the most likely one, with the same log-probability.
        assert top[token] == pytest.approx(logprob)
        assert logprob == pytest.approx(max(top.values()))
        if i > 0:
            assert lp.text_offset[i] == lp.text_offset[i - 1] + len(lp.tokens[i - 1])
    streamed = client.completions.create(model=model, prompt=STORY, max_tokens=10, temperature=0,
                                         logprobs=3, stream=True, extra_body={"ignore_eos": True})
    tokens = [t for chunk in streamed for c in chunk.choices for t in c.logprobs.tokens]
    assert tokens == lp.tokens


def test_chat_logprobs_are_consistent(client, model):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi!"}],
                                       max_tokens=6, temperature=0, logprobs=True,
                                       top_logprobs=2, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 6
    for entry in content:
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        assert entry.top_logprobs[1].logprob <= entry.logprob
    # Without logprobs there are none.
    plain = client.chat.completions.create(model=model, messages=[{"role": "user",
                                                                   "content": "Hi!"}],
                                           max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_stop_strings_end_the_text(client, model):
    fields = dict(model=model, prompt=STORY, max_tokens=24, temperature=0,
                  extra_body={"ignore_eos": True})
    text = client.completions.create(**fields).choices[0].text
    words = text.split()
    assert len(words) >= 4, text
    stop = " " + words[2]
    cut = text[:text.index(stop)]
    for stops in (stop, [stop, "never-generated-string"]):
        r = client.completions.create(stop=stops, **fields)
        assert r.choices[0].text == cut
        assert r.choices[0].finish_reason == "stop"
        texts, finish, _ = stream_texts(client.completions.create(stop=stops, stream=True,
                                                                  **fields))
        assert texts == {0: cut} and finish == {0: "stop"}


def test_include_usage_adds_a_final_usage_chunk(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count to five."}], max_tokens=5,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    without = list(client.completions.create(model=model, prompt="Hi", max_tokens=3, stream=True))
    assert all(c.usage is None and c.choices for c in without)


def test_repeated_long_prompt_reports_cached_tokens(client, model):
    prompt = " ".join(f"item {i} is on shelf {i % 7}." for i in range(40))
    first = client.completions.create(model=model, prompt=prompt, max_tokens=1)
    again = client.completions.create(model=model, prompt=prompt, max_tokens=1)
    assert first.usage.prompt_tokens > 100
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens


def test_request_id_header_is_echoed_and_may_be_reused_while_live(url, model):
    """x-request-id is echoed, never the engine's key: two live requests may carry the same
    one (a proxy's retry does), and a refused request echoes it too."""
    body = {"model": model, "prompt": "Hi", "max_tokens": 1}
    with httpx.Client(timeout=60) as c, c.stream("POST", f"{url}/v1/completions",
                                                 headers={"x-request-id": "my-id-1"},
                                                 json={**body, "max_tokens": 40,
                                                       "stream": True}) as live:
        r = c.post(f"{url}/v1/completions", headers={"x-request-id": "my-id-1"}, json=body)
        assert r.status_code == 200
        assert r.headers["x-request-id"] == "my-id-1" and r.json()["id"].startswith("cmpl-")
        assert live.headers["x-request-id"] == "my-id-1"
        lines = [line for line in live.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
    bad = httpx.post(f"{url}/v1/completions", headers={"x-request-id": "my-id-2"},
                     json={**body, "temperature": "hot"}, timeout=60)
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "my-id-2"


def test_token_id_prompts(client, model):
    r = client.completions.create(model=model, prompt=[504, 3458, 282], max_tokens=2,
                                  temperature=0)
    assert r.usage.prompt_tokens == 3
    nested = client.completions.create(model=model, prompt=[[504, 3458, 282]], max_tokens=2,
                                       temperature=0)
    assert nested.choices[0].text == r.choices[0].text


# --- errors -----------------------------------------------------------------------------------

def post_raw(url, path, content, headers=None):
    return httpx.post(f"{url}{path}", content=content, timeout=60,
                      headers={"content-type": "application/json", **(headers or {})})


def assert_error(response, status, *, param=None, code=None, words=()):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 429 else
                             "rate_limit_error" if status == 429 else "server_error")
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]
    return error


@pytest.mark.parametrize("body,param,words", [
    ({"prompt": "Hi", "temperature": "hot"}, "temperature", ["temperature", "number", "string"]),
    ({"prompt": "Hi", "max_tokens": "10"}, "max_tokens", ["max_tokens", "integer"]),
    ({"prompt": "Hi", "max_tokens": 1.5}, "max_tokens", ["integer"]),
    ({"prompt": "Hi", "n": True}, "n", ["n must be an integer", "boolean"]),
    ({"prompt": "Hi", "stop": [1, 2]}, "stop", ["stop[0]"]),
    ({"prompt": "Hi", "logit_bias": {"x": 1}}, "logit_bias", ["token ids"]),
    ({"prompt": "Hi", "logprobs": 21}, "logprobs", ["[0, 20]"]),
    ({"prompt": "Hi", "echo": True}, "echo", ["echo"]),
    ({"prompt": ["a", "b"]}, "prompt", ["batched prompts (2)"]),
    ({"prompt": {"text": "Hi"}}, "prompt", ["prompt must be"]),
    ({}, "prompt", ["prompt is required"]),
    ({"prompt": ""}, "prompt", ["prompt is empty"]),
    ({"prompt": "Hi", "stream_options": {"include_usage": True}}, "stream_options", ["stream"]),
])
def test_bad_completion_fields_are_400_naming_the_field(url, model, body, param, words):
    r = httpx.post(f"{url}/v1/completions", json={"model": model, **body}, timeout=60)
    assert_error(r, 400, param=param, words=words)


@pytest.mark.parametrize("body,param,words", [
    ({"messages": "hello"}, "messages", ["non-empty array"]),
    ({"messages": []}, "messages", ["non-empty array"]),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", ["messages[0].role is required"]),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", ["content"]),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0]", ["text"]),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}, "top_logprobs",
     ["logprobs: true"]),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools",
     ["not supported"]),
])
def test_bad_chat_fields_are_400_naming_the_field(url, model, body, param, words):
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": model, **body}, timeout=60)
    assert_error(r, 400, param=param, words=words)


def test_engine_limits_are_400(url, model):
    r = httpx.post(f"{url}/v1/completions", json={"model": model, "prompt": "Hi",
                                                  "temperature": -1}, timeout=60)
    assert_error(r, 400, words=["temperature"])
    long_prompt = "hello " * 9000  # more tokens than the 8192-token context
    r = httpx.post(f"{url}/v1/completions", json={"model": model, "prompt": long_prompt},
                   timeout=60)
    assert_error(r, 400, words=["context length"])
    r = httpx.post(f"{url}/v1/chat/completions",
                   json={"model": model, "messages": [{"role": "user", "content": long_prompt}]},
                   timeout=60)
    assert_error(r, 400, param="messages", words=["context length"])


def test_unknown_model_is_404(client, url):
    r = httpx.post(f"{url}/v1/completions", json={"model": "gpt-4", "prompt": "Hi"}, timeout=60)
    assert_error(r, 404, param="model", code="model_not_found", words=["gpt-4"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_broken_bodies(url, model):
    assert_error(post_raw(url, "/v1/completions", b'{"model": "m", "prompt": '), 400,
                 param="body", words=["not valid JSON"])
    assert_error(post_raw(url, "/v1/completions", b"[1, 2]"), 400, words=["JSON object"])
    bad_utf8 = b'{"model": "' + model.encode() + b'", "prompt": "caf\xe9"}'
    assert_error(post_raw(url, "/v1/completions", bad_utf8), 400, words=["UTF-8"])
    huge = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    assert_error(post_raw(url, "/v1/completions", huge), 413, code="request_too_large",
                 words=["limit"])


def test_hostile_sizes_are_400_and_the_server_keeps_serving(client, url, model, server):
    """Review findings: a huge n must not size anything before validation; a deeply nested body
    must not recurse on the loop thread's stack."""
    for n in (2147483647, 65, 0):
        r = httpx.post(f"{url}/v1/completions",
                       json={"model": model, "prompt": "Hi", "n": n}, timeout=60)
        assert_error(r, 400, param="n")
    deep = b'{"model": "' + model.encode() + b'", "prompt": [' + b"[" * 200000 + b"]" * 200000 + b"]}"
    assert_error(post_raw(url, "/v1/completions", deep), 400, param="body", words=["deeper"])
    assert server.proc.poll() is None
    r = client.completions.create(model=model, prompt="Hi", max_tokens=2)
    assert r.usage.completion_tokens >= 1


def test_http10_keep_alive_client_gets_the_whole_stream(server, model):
    body = json.dumps({"model": model, "prompt": "Hi", "max_tokens": 3, "stream": True}).encode()
    request = (b"POST /v1/completions HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
               b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):  # the server closes the connection at the stream's end
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert b"content-length: 0" not in head.lower()
    assert payload.rstrip().endswith(b"data: [DONE]")
    assert payload.count(b"data: {") >= 3


def test_wrong_method_and_unknown_route(url):
    r = httpx.get(f"{url}/v1/completions")
    assert_error(r, 405, code="method_not_allowed")
    assert r.headers["allow"] == "POST"
    r = httpx.post(f"{url}/health")
    assert_error(r, 405)
    assert r.headers["allow"] == "GET"
    assert_error(httpx.get(f"{url}/v1/engines"), 404, code="unknown_url", words=["/v1/engines"])


def test_bad_requests_leave_the_server_serving(client, model, url):
    for _ in range(3):
        post_raw(url, "/v1/chat/completions", b"\xff\xfe{")
    r = client.completions.create(model=model, prompt="Hi", max_tokens=2)
    assert r.usage.completion_tokens >= 1
    assert metric(url, "kvasir_requests_rejected_total", '{reason="invalid_argument"}') >= 3


# --- disconnects ------------------------------------------------------------------------------

def aborted(url):
    return metric(url, "kvasir_requests_finished_total", '{finish_reason="abort"}')


def test_client_disconnect_aborts_a_stream(url, model):
    before = aborted(url)
    body = {"model": model, "prompt": STORY, "max_tokens": 4000, "stream": True,
            "ignore_eos": True}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        got = [line for line, _ in zip(lines, range(6)) if line.startswith("data: ")]
        assert got
    # Closing the response closed the connection: the engine request ends as aborted.
    assert wait_until(lambda: aborted(url) >= before + 1)
    assert wait_until(lambda: metric(url, "kvasir_num_requests_running") == 0)


def test_client_disconnect_aborts_a_non_streamed_request(server, url, model):
    before = aborted(url)
    body = json.dumps({"model": model, "prompt": STORY, "max_tokens": 4000,
                       "ignore_eos": True}).encode()
    with socket.create_connection(("127.0.0.1", server.http_port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert wait_until(lambda: metric(url, "kvasir_num_requests_running") >= 1)
    # Nothing was written to the client yet: the server notices the closed socket by itself.
    assert wait_until(lambda: aborted(url) >= before + 1)
    assert wait_until(lambda: metric(url, "kvasir_num_requests_running") == 0)


# --- admission control and drain (servers of their own) -----------------------------------------

def test_full_queue_is_429_with_retry_after(kvasir_bin, model_path, tmp_path):
    with own_http_server(kvasir_bin, model_path, tmp_path, "--max-num-seqs", "1",
                         "--max-waiting", "1") as srv:
        url = srv.http_url
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        body = {"model": model, "prompt": STORY, "max_tokens": 2000, "stream": True,
                "ignore_eos": True}
        with httpx.Client(timeout=120) as a, httpx.Client(timeout=120) as b:
            with a.stream("POST", f"{url}/v1/completions", json=body) as running:
                assert running.status_code == 200
                # Keep the line iterator referenced: a discarded one is closed, and closing it
                # closes the response, i.e. disconnects (and so aborts) the running request.
                running_lines = running.iter_lines()
                next(line for line in running_lines if line.startswith("data: "))
                with b.stream("POST", f"{url}/v1/completions", json=body) as waiting:
                    assert waiting.status_code == 200  # accepted: it waits for the running one
                    r = httpx.post(f"{url}/v1/completions", json={**body, "stream": False})
                    assert_error(r, 429, code="rate_limit_exceeded", words=["queue is full"])
                    assert r.headers["retry-after"] == "1"
        assert metric(url, "kvasir_requests_rejected_total", '{reason="queue_full"}') == 1
        assert wait_until(lambda: metric(url, "kvasir_num_requests_running") == 0)


def test_sigterm_drains_http(kvasir_bin, model_path, tmp_path):
    with own_http_server(kvasir_bin, model_path, tmp_path, "--max-num-seqs", "2",
                         terminate=False) as srv:
        url = srv.http_url
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        body = {"model": model, "prompt": STORY, "max_tokens": 40, "stream": True,
                "ignore_eos": True, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            srv.proc.send_signal(signal.SIGTERM)
            assert wait_until(lambda: httpx.get(f"{url}/ready").status_code == 503, 30)
            refused = httpx.post(f"{url}/v1/completions", json={**body, "stream": False})
            assert_error(refused, 503, code="service_unavailable", words=["draining"])
            events, done = sse_events([first, *lines])
        assert done
        assert events[-1]["usage"]["completion_tokens"] == 40
        assert srv.proc.wait(timeout=120) == 0, srv.log()
