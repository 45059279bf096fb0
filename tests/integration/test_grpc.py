"""kvasir serve over real gRPC: streaming Generate, Tokenize, GetModelInfo, health, reflection,
bad input, cancellation and concurrency."""
import threading

import grpc
import pytest

from conftest import run_cli_json

PROMPT = "The capital of France is"


def generate(stub, pb2, timeout=120, metadata=None, **fields):
    """Runs Generate; returns (chunks, complete, request_ids)."""
    chunks, complete, ids = [], None, set()
    for response in stub.Generate(pb2.GenerateRequest(**fields), timeout=timeout,
                                  metadata=metadata):
        ids.add(response.request_id)
        assert complete is None, "a message after Complete"
        if response.WhichOneof("response") == "chunk":
            chunks.append(response.chunk)
        else:
            complete = response.complete
    assert complete is not None, "stream ended without Complete"
    return chunks, complete, ids


def stream_text_and_ids(chunks, complete):
    text = "".join(c.text for c in chunks) + complete.text
    ids = [i for c in chunks for i in c.token_ids] + list(complete.token_ids)
    return text, ids


def assert_good_request_succeeds(stub, pb2):
    _, complete, _ = generate(stub, pb2, text="Hello", max_tokens=2, ignore_eos=True)
    assert complete.finish_reason == pb2.FINISH_REASON_LENGTH
    assert complete.usage.completion_tokens == 2


def test_greedy_stream_matches_offline_cli(stub, stubs, kvasir_bin, model_path):
    pb2, _ = stubs
    chunks, complete, ids = generate(stub, pb2, text=PROMPT, max_tokens=24)
    text, token_ids = stream_text_and_ids(chunks, complete)
    offline = run_cli_json(kvasir_bin, "generate", "--model", model_path, "--prompt", PROMPT,
                           "--max-tokens", 24)
    assert text == offline["text"]
    assert token_ids == offline["token_ids"]
    assert len(chunks) >= 1, "tokens should stream before Complete"
    assert complete.finish_reason in (pb2.FINISH_REASON_LENGTH, pb2.FINISH_REASON_STOP)
    assert complete.usage.completion_tokens == len(token_ids)
    assert complete.usage.prompt_tokens > 0
    assert len(ids) == 1 and next(iter(ids)).startswith("kv-")


def test_request_id_from_field_then_metadata(stub, stubs):
    pb2, _ = stubs
    _, _, ids = generate(stub, pb2, request_id="my-id-1", text="Hi", max_tokens=1)
    assert ids == {"my-id-1"}
    _, _, ids = generate(stub, pb2, metadata=[("x-request-id", "hdr-id-2")], text="Hi",
                         max_tokens=1)
    assert ids == {"hdr-id-2"}


def test_token_ids_input_matches_text_input(stub, stubs):
    pb2, _ = stubs
    prompt_ids = list(stub.Tokenize(pb2.TokenizeRequest(text=PROMPT)).token_ids)
    a = stream_text_and_ids(*generate(stub, pb2, text=PROMPT, max_tokens=8)[:2])
    b = stream_text_and_ids(
        *generate(stub, pb2, token_ids=pb2.TokenIds(ids=prompt_ids), max_tokens=8)[:2])
    assert a == b


def test_health_serving_for_server_and_service(server, channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "kvasir.v1.Kvasir"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_service(channel):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = [s.name for r in responses for s in r.list_services_response.service]
    assert "kvasir.v1.Kvasir" in names
    assert "grpc.health.v1.Health" in names
    # Generate and Tokenize are registered raw (ByteBuffer): reflection still describes them.
    from google.protobuf import descriptor_pb2
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="kvasir.v1.Kvasir")]),
        timeout=10)
    methods = {}
    for r in responses:
        for raw in r.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for service in file.service:
                if f"{file.package}.{service.name}" == "kvasir.v1.Kvasir":
                    methods = {m.name: (m.input_type, m.output_type) for m in service.method}
    assert methods == {
        "Generate": (".kvasir.v1.GenerateRequest", ".kvasir.v1.GenerateResponse"),
        "Complete": (".kvasir.v1.GenerateRequest", ".kvasir.v1.GenerateResponse"),
        "Abort": (".kvasir.v1.AbortRequest", ".kvasir.v1.AbortResponse"),
        "Tokenize": (".kvasir.v1.TokenizeRequest", ".kvasir.v1.TokenizeResponse"),
        "Detokenize": (".kvasir.v1.DetokenizeRequest", ".kvasir.v1.DetokenizeResponse"),
        "GetLoads": (".kvasir.v1.GetLoadsRequest", ".kvasir.v1.Loads"),
        "GetModelInfo": (".kvasir.v1.GetModelInfoRequest", ".kvasir.v1.ModelInfo"),
    }


def test_tokenize_matches_cli(stub, stubs, kvasir_bin, model_path):
    pb2, _ = stubs
    text = "Hello world! Ünïcödé 123"
    offline = run_cli_json(kvasir_bin, "tokenize", "--model", model_path, "--text", text)
    assert list(stub.Tokenize(pb2.TokenizeRequest(text=text)).token_ids) == offline["token_ids"]
    offline = run_cli_json(kvasir_bin, "tokenize", "--model", model_path, "--text", text,
                           "--no-special")
    reply = stub.Tokenize(pb2.TokenizeRequest(text=text, add_special_tokens=False))
    assert list(reply.token_ids) == offline["token_ids"]


def test_model_info(stub, stubs):
    pb2, _ = stubs
    info = stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=10)
    assert info.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info.architecture == "LlamaForCausalLM"
    assert info.format == "gguf"
    assert info.weight_dtype == "Q4_1"
    assert info.vocab_size == 49152
    assert info.num_layers == 30
    assert info.hidden_size == 576
    assert 0 < info.max_model_len <= 8192
    assert len(info.stop_token_ids) >= 1
    assert all(0 <= i < info.vocab_size for i in info.stop_token_ids)
    assert info.kernels


def bad_request_cases(pb2, max_model_len):
    return [
        ("empty text", dict(text="", max_tokens=4), "text"),
        ("no input", dict(max_tokens=4), "input"),
        ("empty token ids", dict(token_ids=pb2.TokenIds(ids=[]), max_tokens=4), "token_ids"),
        ("prompt longer than the context",
         dict(token_ids=pb2.TokenIds(ids=[28] * (max_model_len + 1)), max_tokens=1), "context"),
        ("max_tokens 0", dict(text="Hi", max_tokens=0), "max_tokens"),
        ("max_tokens huge", dict(text="Hi", max_tokens=10**9), "max_tokens"),
        ("token id out of vocab", dict(token_ids=pb2.TokenIds(ids=[1, 49152]), max_tokens=1),
         "token id"),
        ("negative token id", dict(token_ids=pb2.TokenIds(ids=[-1]), max_tokens=1), "token id"),
        ("negative temperature", dict(text="Hi", temperature=-0.5), "temperature"),
        ("top_p 0", dict(text="Hi", top_p=0.0), "top_p"),
        ("negative top_k", dict(text="Hi", top_k=-1), "top_k"),
        ("stop token out of vocab", dict(text="Hi", stop_token_ids=[10**6]), "stop_token_ids"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_request_is_invalid_argument_and_server_stays_up(stub, stubs, case):
    pb2, _ = stubs
    max_model_len = stub.GetModelInfo(pb2.GetModelInfoRequest()).max_model_len
    name, fields, field_name = bad_request_cases(pb2, max_model_len)[case]
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, pb2, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    assert field_name in error.value.details(), (name, error.value.details())
    assert_good_request_succeeds(stub, pb2)


def field_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited field on the wire (tag and length fit one byte here)."""
    assert number < 16 and len(value) < 128
    return bytes([number << 3 | 2, len(value)]) + value


BAD_UTF8 = b"\xff\xfe bad"


def raw_generate(channel, pb2, wire: bytes):
    call = channel.unary_stream("/kvasir.v1.Kvasir/Generate", request_serializer=lambda b: b,
                                response_deserializer=pb2.GenerateResponse.FromString)
    return list(call(wire, timeout=30))


def raw_tokenize(channel, pb2, wire: bytes):
    call = channel.unary_unary("/kvasir.v1.Kvasir/Tokenize", request_serializer=lambda b: b,
                               response_deserializer=pb2.TokenizeResponse.FromString)
    return call(wire, timeout=30)


MAX_TOKENS_2 = bytes([0x50, 2])  # field 10 (max_tokens, varint) = 2


@pytest.mark.parametrize("rpc,wire,field", [
    ("Generate", field_bytes(2, BAD_UTF8) + MAX_TOKENS_2, "GenerateRequest.text"),
    ("Generate", field_bytes(1, BAD_UTF8) + field_bytes(2, b"Hi") + MAX_TOKENS_2,
     "GenerateRequest.request_id"),
    ("Tokenize", field_bytes(1, BAD_UTF8), "TokenizeRequest.text"),
], ids=["generate-text", "generate-request_id", "tokenize-text"])
def test_invalid_utf8_is_invalid_argument_naming_the_field(server, channel, stub, stubs, rpc,
                                                           wire, field):
    """proto3 strings must be UTF-8, so grpcio cannot build these requests: the wire bytes are
    hand-encoded. The server takes Generate and Tokenize raw and parses them itself, so the
    protobuf parser's refusal becomes INVALID_ARGUMENT naming the field (gRPC's callback API
    would answer UNIMPLEMENTED with no message). The server finds the field before the protobuf
    parser runs, so libprotobuf does not log its own "invalid UTF-8 data" error."""
    pb2, _ = stubs
    send = raw_generate if rpc == "Generate" else raw_tokenize
    with pytest.raises(grpc.RpcError) as error:
        send(channel, pb2, wire)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert error.value.details() == f"{field} is not valid UTF-8"
    assert "invalid UTF-8 data" not in server.log()
    assert_good_request_succeeds(stub, pb2)
    assert list(stub.Tokenize(pb2.TokenizeRequest(text="Hi")).token_ids)


def test_raw_wire_requests_work_and_malformed_is_invalid_argument(channel, stub, stubs):
    pb2, _ = stubs
    # The hand encoding is right: the same bytes with valid UTF-8 work.
    assert raw_generate(channel, pb2, field_bytes(2, b"Hi") +
                        MAX_TOKENS_2)[-1].complete.usage.completion_tokens == 2
    assert (list(raw_tokenize(channel, pb2, field_bytes(1, b"Hi")).token_ids) ==
            list(stub.Tokenize(pb2.TokenizeRequest(text="Hi")).token_ids))
    # The text field's length runs past the end of the message: not parseable at all.
    for send, wire, message in ((raw_generate, bytes([0x12, 40]) + b"Hi", "GenerateRequest"),
                                (raw_tokenize, bytes([0x0A, 40]) + b"Hi", "TokenizeRequest")):
        with pytest.raises(grpc.RpcError) as error:
            send(channel, pb2, wire)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == f"malformed {message}"
    assert_good_request_succeeds(stub, pb2)


def test_tokenize_rejects_empty_text(stub, stubs):
    pb2, _ = stubs
    with pytest.raises(grpc.RpcError) as error:
        stub.Tokenize(pb2.TokenizeRequest(text=""))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "text" in error.value.details()


def test_client_cancel_mid_stream_then_new_request_succeeds(stub, stubs):
    pb2, _ = stubs
    call = stub.Generate(pb2.GenerateRequest(request_id="to-cancel", text="Once upon a time",
                                             max_tokens=200, ignore_eos=True), timeout=120)
    first = next(call)
    assert first.WhichOneof("response") == "chunk"
    call.cancel()
    with pytest.raises(grpc.RpcError) as error:
        for _ in call:
            pass
    assert error.value.code() == grpc.StatusCode.CANCELLED
    # The engine aborts the request; its id becomes free again once the abort lands.
    assert_good_request_succeeds(stub, pb2)
    _, complete, _ = generate(stub, pb2, request_id="to-cancel", text="Hi", max_tokens=1)
    assert complete.usage.completion_tokens == 1


def test_deadline_exceeded_aborts_request(stub, stubs):
    pb2, _ = stubs
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, pb2, timeout=0.5, text="Once upon a time", max_tokens=500,
                 ignore_eos=True)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_good_request_succeeds(stub, pb2)


def test_concurrent_streams_all_complete(stub, stubs):
    pb2, _ = stubs
    prompts = ["Hello", "The sky is", "def main():", "Paris is", "1, 2, 3,", "Dear Sir,"]
    results, errors = {}, []

    def worker(i, prompt):
        try:
            chunks, complete, _ = generate(stub, pb2, text=prompt, max_tokens=8, ignore_eos=True)
            results[i] = (stream_text_and_ids(chunks, complete), complete)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, p)) for i, p in enumerate(prompts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert len(results) == len(prompts)
    for (text, ids), complete in results.values():
        assert complete.finish_reason == pb2.FINISH_REASON_LENGTH
        assert len(ids) == 8 == complete.usage.completion_tokens
    # Greedy and batch-independent: a stream alone gives the same tokens as in the batch.
    (text0, ids0), _ = results[0]
    assert stream_text_and_ids(*generate(stub, pb2, text=prompts[0], max_tokens=8,
                                         ignore_eos=True)[:2])[1] == ids0
