"""kvasir serve over real gRPC: unary Complete, Abort, Detokenize, GetLoads, health names,
admission control (RESOURCE_EXHAUSTED with a retry hint) and graceful drain on SIGTERM."""
import contextlib
import json
import pathlib
import signal
import subprocess
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import Server, free_port, wait_serving
from test_grpc import generate, stream_text_and_ids

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"

STORY = "Once upon a time, in a small village,"


@contextlib.contextmanager
def own_server(kvasir_bin, model_path, tmp_path, *args):
    """A server of this test's own, with extra flags; yields (Server, channel)."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        # No HTTP unless a test asks for it (the default port 8000 may be taken).
        http = [] if "--http-port" in map(str, args) else ["--http-port", "0"]
        proc = subprocess.Popen([str(kvasir_bin), "serve", "--model", str(model_path), "--host",
                                 "127.0.0.1", "--port", str(port), *http, *map(str, args)],
                                stdout=log, stderr=subprocess.STDOUT)
        srv = Server(proc, port, log_path)
        try:
            wait_serving(srv, 180)
            with grpc.insecure_channel(srv.address) as channel:
                yield srv, channel
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_until(predicate, timeout_s=30.0):
    """Polls predicate until true (the server's state changes within steps, not at once)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def health(channel, name):
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status


def test_complete_unary_equals_the_stream(stub, stubs):
    pb2, _ = stubs
    fields = dict(text=STORY, max_tokens=12, ignore_eos=True, logprobs=2)
    chunks, complete, _ = generate(stub, pb2, **fields)
    text, ids = stream_text_and_ids(chunks, complete)
    reply = stub.Complete(pb2.GenerateRequest(request_id="unary-1", **fields), timeout=120)
    assert reply.request_id == "unary-1"
    assert reply.WhichOneof("response") == "complete"
    assert reply.complete.text == text
    assert list(reply.complete.token_ids) == ids
    assert [lp.token_id for lp in reply.complete.logprobs] == ids
    assert reply.complete.finish_reason == pb2.FINISH_REASON_LENGTH
    assert reply.complete.usage.completion_tokens == 12
    with pytest.raises(grpc.RpcError) as err:
        stub.Complete(pb2.GenerateRequest(text="Hi", max_tokens=0), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_tokens" in err.value.details()


def test_tokenize_detokenize_round_trip_and_bad_ids(stub, stubs):
    pb2, _ = stubs
    text = "Hello, wörld! 你好 🙂"
    ids = stub.Tokenize(pb2.TokenizeRequest(text=text, add_special_tokens=False)).token_ids
    assert stub.Detokenize(pb2.DetokenizeRequest(token_ids=ids)).text == text
    info = stub.GetModelInfo(pb2.GetModelInfoRequest())
    with pytest.raises(grpc.RpcError) as err:
        stub.Detokenize(pb2.DetokenizeRequest(token_ids=[1, info.vocab_size]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "token_ids" in err.value.details()


def test_model_info_describes_the_kv_cache_and_limits(stub, stubs):
    pb2, _ = stubs
    info = stub.GetModelInfo(pb2.GetModelInfoRequest())
    assert info.kv_block_size == 16 and info.kv_num_blocks > 0 and info.kv_bytes_per_token > 0
    assert info.max_num_seqs == 8 and info.max_batched_tokens >= info.max_num_seqs
    assert info.prefix_caching
    assert info.tensor_parallel_size == 1 and info.expert_parallel_size == 1
    assert info.eos_token != ""


def test_abort_rpc_ends_a_live_stream_and_frees_its_blocks(stub, stubs):
    pb2, _ = stubs
    responses = []
    first_chunk = threading.Event()

    def long_stream():
        for r in stub.Generate(pb2.GenerateRequest(request_id="to-abort", text=STORY,
                                                   max_tokens=4000, ignore_eos=True),
                               timeout=300):
            responses.append(r)
            first_chunk.set()

    t = threading.Thread(target=long_stream)
    t.start()
    assert first_chunk.wait(timeout=120)
    loads = stub.GetLoads(pb2.GetLoadsRequest())
    assert loads.num_running >= 1 and loads.kv_cache_usage > 0.0 and loads.num_steps > 0
    stub.Abort(pb2.AbortRequest(request_ids=["to-abort", "no-such-request"]))
    t.join(timeout=60)
    assert not t.is_alive()
    complete = responses[-1].complete
    assert responses[-1].WhichOneof("response") == "complete"
    assert complete.finish_reason == pb2.FINISH_REASON_ABORT
    assert 0 < complete.usage.completion_tokens < 4000
    # Its blocks are freed within a step: once nothing runs, the KV cache is empty.
    assert wait_until(lambda: stub.GetLoads(pb2.GetLoadsRequest()).num_running == 0)
    assert stub.GetLoads(pb2.GetLoadsRequest()).kv_cache_usage == 0.0


def test_health_has_liveness_and_readiness_names(channel):
    for name in ("kvasir.liveness", "kvasir.readiness", "", "kvasir.v1.Kvasir"):
        assert health(channel, name) == health_pb2.HealthCheckResponse.SERVING, name


def test_full_waiting_queue_is_resource_exhausted_with_a_retry_hint(kvasir_bin, model_path,
                                                                    tmp_path, stubs):
    pb2, pb2_grpc = stubs
    with own_server(kvasir_bin, model_path, tmp_path, "--max-num-seqs", 1, "--max-waiting",
                    1) as (_, channel):
        stub = pb2_grpc.KvasirStub(channel)
        first = stub.Generate(pb2.GenerateRequest(request_id="running", text=STORY,
                                                  max_tokens=4000, ignore_eos=True))
        next(first)  # running
        second = stub.Generate(pb2.GenerateRequest(request_id="waiting", text=STORY,
                                                   max_tokens=4, ignore_eos=True))
        assert wait_until(lambda: stub.GetLoads(pb2.GetLoadsRequest()).num_waiting == 1)
        with pytest.raises(grpc.RpcError) as err:
            generate(stub, pb2, text=STORY, max_tokens=4)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "waiting queue is full" in err.value.details()
        trailers = dict(err.value.trailing_metadata() or ())
        assert int(trailers["retry-after-ms"]) > 0
        with pytest.raises(grpc.RpcError) as err:
            stub.Complete(pb2.GenerateRequest(text=STORY, max_tokens=4), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()
        assert [r for r in second][-1].complete.usage.completion_tokens == 4


def test_sigterm_drains_in_flight_streams_then_exits_zero(kvasir_bin, model_path, tmp_path,
                                                          stubs):
    pb2, pb2_grpc = stubs
    with own_server(kvasir_bin, model_path, tmp_path, "--drain-timeout-s", 120) as (srv, channel):
        stub = pb2_grpc.KvasirStub(channel)
        stream = stub.Generate(pb2.GenerateRequest(text=STORY, max_tokens=200, ignore_eos=True),
                               timeout=300)
        first = next(stream)
        assert first.WhichOneof("response") == "chunk"
        srv.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: health(channel, "kvasir.readiness")
                          == health_pb2.HealthCheckResponse.NOT_SERVING)
        assert health(channel, "kvasir.liveness") == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            generate(stub, pb2, text="Hello", max_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        rest = list(stream)  # the in-flight stream finishes normally
        assert rest[-1].complete.finish_reason == pb2.FINISH_REASON_LENGTH
        ids = list(first.chunk.token_ids) + [i for r in rest[:-1] for i in r.chunk.token_ids]
        ids += list(rest[-1].complete.token_ids)
        assert len(ids) == 200
        assert srv.proc.wait(timeout=60) == 0
        assert "draining" in srv.log()


def test_listens_while_loading_then_a_signal_during_the_load_exits_zero(kvasir_bin, stubs,
                                                                        tmp_path):
    """A model that takes a while to load (dummy weights of a ~400M-parameter config): during
    the load liveness is SERVING, readiness NOT_SERVING, the API UNAVAILABLE; SIGTERM then ends
    the process at once with 0."""
    pb2, pb2_grpc = stubs
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
              "intermediate_size": 8192, "num_hidden_layers": 4, "num_attention_heads": 16,
              "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False}
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(kvasir_bin), "serve", "--model", str(tmp_path / "model"),
                                 "--load-format", "dummy", "--host", "127.0.0.1", "--port",
                                 str(port), "--http-port", "0", "--threads", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        srv = Server(proc, port, log_path)
        try:
            with grpc.insecure_channel(srv.address) as channel:
                assert wait_until(lambda: b"loading" in log_path.read_bytes())
                assert health(channel, "kvasir.liveness") == health_pb2.HealthCheckResponse.SERVING
                assert health(channel, "kvasir.readiness") == (
                    health_pb2.HealthCheckResponse.NOT_SERVING)
                stub = pb2_grpc.KvasirStub(channel)
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "loading" in err.value.details()
                assert "serving" not in srv.log(), "the load finished too soon for this test"
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0
            assert "received while loading the model" in srv.log()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_final_message_carries_timings(stub, stubs):
    pb2, _ = stubs
    _, complete, _ = generate(stub, pb2, text=STORY, max_tokens=4, ignore_eos=True)
    t = complete.timings
    assert 0.0 <= t.queued_s <= t.first_token_s <= t.finished_s
    assert t.first_token_s > 0.0


def test_chat_messages_are_rendered_with_the_models_template(stub, stubs):
    """The prompt is the SmolLM2 template's rendering (goldens from transformers, tokenized
    without added special tokens): the same tokens as sending that text."""
    pb2, _ = stubs
    goldens = [json.loads(line) for line in
               (FIXTURES / "chat_templates" / "smollm2.jsonl").read_text().splitlines()]
    cases = [g for g in goldens if g["add_generation_prompt"] and not g.get("kwargs")][:3]
    assert cases
    for case in cases:
        messages = pb2.ChatMessages(
            messages=[pb2.ChatMessage(role=m["role"], content=m["content"])
                      for m in case["messages"]],
            add_generation_prompt=True)
        chunks, complete, _ = generate(stub, pb2, messages=messages, max_tokens=4,
                                       ignore_eos=True)
        t_chunks, t_complete, _ = generate(stub, pb2, text=case["expected"], max_tokens=4,
                                           ignore_eos=True, add_special_tokens=False)
        assert complete.usage.prompt_tokens == t_complete.usage.prompt_tokens
        assert stream_text_and_ids(chunks, complete) == stream_text_and_ids(t_chunks, t_complete)


def test_bad_chat_messages_are_invalid_argument(stub, stubs):
    pb2, _ = stubs
    bad = [
        (pb2.ChatMessages(), "messages is empty"),
        (pb2.ChatMessages(messages=[pb2.ChatMessage(role="", content="Hi")]), "role is empty"),
    ]
    for messages, needle in bad:
        with pytest.raises(grpc.RpcError) as err:
            generate(stub, pb2, messages=messages, max_tokens=4)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in err.value.details()


@pytest.mark.parametrize("mode", [[], ["--unary"], ["--rate", "20", "--channels", "2"]])
def test_load_tool_reports_what_it_measured(server, kvasir_bin, mode):
    result = subprocess.run([str(kvasir_bin), "bench", "--target", server.address, "--requests",
                             "6", "--concurrency", "3", "--prompt-tokens", "16", "--max-tokens",
                             "5", "--json", "-", *mode], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    import json
    report = json.loads(result.stdout)
    assert report["count"] == 6
    assert report["status_codes"] == {"OK": 6}
    assert report["output_tokens"] == 30
    assert report["latency_s"]["count"] == 6
    lat = report["latency_s"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert report["ttft_s"]["count"] == 6
    if "--unary" not in mode:
        assert report["itl_s"]["count"] == 6 * 4  # 4 gaps between 5 tokens per stream
        assert report["ttft_s"]["max"] <= lat["max"]
