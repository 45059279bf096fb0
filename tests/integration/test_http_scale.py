"""1,000 concurrent SSE streams against one `kvasir serve` (a tiny Llama with dummy weights, so
the test measures the front end, not the model), from one asyncio client."""
import asyncio
import json
import pathlib
import resource
import shutil

import httpx

from conftest import REPO
from http_util import own_http_server, sse_events

NUM_STREAMS = 1000
MAX_TOKENS = 8

TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 2, "vocab_size": 49152, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
}


def tiny_model_dir(tmp_path) -> pathlib.Path:
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_LLAMA))
    shutil.copy(REPO / "tests/fixtures/tokenizer/smollm2/tokenizer.json", model)
    return model


async def one_stream(client, url, model, i, barrier):
    """A stream that reads its first event, then waits until every stream has read its first
    event before reading on: all NUM_STREAMS are open at the same time."""
    body = {"model": model, "prompt": f"Stream number {i} says", "max_tokens": MAX_TOKENS,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        lines = r.aiter_lines()
        first = [await anext(lines)]
        await barrier.wait()
        rest = [line async for line in lines]
    return sse_events(first + rest)


async def health_during(client, url, streams_task):
    """/health keeps answering while the streams run; returns how many times it did."""
    answered = 0
    while not streams_task.done():
        r = await client.get(f"{url}/health")
        assert r.status_code == 200
        answered += 1
        await asyncio.sleep(0.5)
    return answered


async def run_streams(url):
    limits = httpx.Limits(max_connections=NUM_STREAMS + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(600.0, connect=120.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client, \
            httpx.AsyncClient(timeout=60.0) as probe:
        model = (await probe.get(f"{url}/v1/models")).json()["data"][0]["id"]
        barrier = asyncio.Barrier(NUM_STREAMS)
        streams = asyncio.gather(*(one_stream(client, url, model, i, barrier)
                                   for i in range(NUM_STREAMS)))
        answered = await health_during(probe, url, streams)
        return await streams, answered, model


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] > NUM_STREAMS + 100


def test_thousand_concurrent_sse_streams(kvasir_bin, tmp_path):
    raise_file_limit()  # the client holds a socket per stream too
    model_dir = tiny_model_dir(tmp_path)
    # 256 run at once; the others wait in the engine's queue with their connections open.
    with own_http_server(kvasir_bin, model_dir, tmp_path, "--load-format", "dummy",
                         "--max-num-seqs", "256", "--max-batched-tokens", "2048",
                         "--max-waiting", "2000") as srv:
        results, answered, model = asyncio.run(run_streams(srv.http_url))
        assert model == "dummy:tiny-llama"
        assert len(results) == NUM_STREAMS
        for events, done in results:
            assert done
            usage = events[-1]
            assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == MAX_TOKENS
            assert sum(len(e["choices"]) for e in events[:-1]) >= 1
            assert all(e["choices"][0]["finish_reason"] is None for e in events[:-2])
            assert events[-2]["choices"][0]["finish_reason"] == "length"
        assert answered >= 1
        m = httpx.get(f"{srv.http_url}/metrics").text
        assert (f'kvasir_http_requests_total{{method="POST",path="/v1/completions",code="200"}} '
                f'{NUM_STREAMS}') in m
