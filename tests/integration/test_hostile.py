"""Hostile and malformed requests while other streams run: each gets the right status and a
message naming the problem, and the streams around them complete unharmed."""
import threading

import grpc
import pytest

from test_grpc import generate, stream_text_and_ids
from test_lifecycle import wait_until

STORY = "Once upon a time, in a small village,"


def hostile_requests(pb2, vocab, max_len):
    nan, inf = float("nan"), float("inf")
    return [
        (dict(text="hi", max_tokens=4, temperature=nan), "temperature"),
        (dict(text="hi", max_tokens=4, temperature=-1.0), "temperature"),
        (dict(text="hi", max_tokens=4, top_p=inf), "top_p"),
        (dict(text="hi", max_tokens=4, top_k=-5), "top_k"),
        (dict(text="hi", max_tokens=10**9), "max_tokens"),
        (dict(text="hi", max_tokens=-3), "max_tokens"),
        (dict(text="hi", max_tokens=4, stop=["x" * (1 << 20)]), "stop"),
        (dict(text="hi", max_tokens=4, stop=["y" * 1000 + str(i) for i in range(5)]), "stop"),
        (dict(text="hi", max_tokens=4, stop_token_ids=[1] * 129), "stop_token_ids"),
        (dict(token_ids=pb2.TokenIds(ids=[1, vocab + 5]), max_tokens=4), str(vocab + 5)),
        (dict(token_ids=pb2.TokenIds(ids=[-7]), max_tokens=4), "-7"),
        (dict(token_ids=pb2.TokenIds(ids=[1] * (max_len + 1)), max_tokens=1), "context length"),
        (dict(text="hi", max_tokens=4, logit_bias={i: 1.0 for i in range(vocab, vocab + 3)}),
         "logit_bias"),
        (dict(text="hi", max_tokens=4, stop_token_ids=[vocab]), "stop_token_ids"),
        (dict(text="", max_tokens=4), "text"),
        (dict(max_tokens=4), "input"),
    ]


def test_hostile_requests_fail_cleanly_while_other_streams_complete(stub, stubs):
    pb2, _ = stubs
    info = stub.GetModelInfo(pb2.GetModelInfoRequest())
    want = {}
    for i in range(3):
        chunks, complete, _ = generate(stub, pb2, text=f"{STORY} {i}", max_tokens=40,
                                       ignore_eos=True)
        want[i] = stream_text_and_ids(chunks, complete)[1]
    got, errors = {}, []

    def good(i):
        try:
            chunks, complete, _ = generate(stub, pb2, text=f"{STORY} {i}", max_tokens=40,
                                           ignore_eos=True)
            got[i] = stream_text_and_ids(chunks, complete)[1]
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=good, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for fields, needle in hostile_requests(pb2, info.vocab_size, info.max_model_len):
        for rpc in ("Generate", "Complete"):
            with pytest.raises(grpc.RpcError) as err:
                if rpc == "Generate":
                    generate(stub, pb2, **fields)
                else:
                    stub.Complete(pb2.GenerateRequest(**fields), timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, fields.keys())
            assert needle in err.value.details(), (rpc, err.value.details())
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert got == want  # greedy outputs unchanged by the hostile traffic around them


def test_client_cancel_frees_the_kv_blocks_within_a_step(stub, stubs):
    pb2, _ = stubs
    stream = stub.Generate(pb2.GenerateRequest(text=STORY, max_tokens=4000, ignore_eos=True),
                           timeout=300)
    assert next(stream).WhichOneof("response") == "chunk"
    assert stub.GetLoads(pb2.GetLoadsRequest()).kv_cache_usage > 0.0
    stream.cancel()
    assert wait_until(lambda: stub.GetLoads(pb2.GetLoadsRequest()).num_running == 0)
    assert stub.GetLoads(pb2.GetLoadsRequest()).kv_cache_usage == 0.0
