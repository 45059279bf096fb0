"""kvasir serve over real gRPC: sampling fields, stop rules, logprobs and the prefix cache."""
import math
import threading

import grpc
import pytest

from test_grpc import assert_good_request_succeeds, generate, stream_text_and_ids

STORY = "Once upon a time, in a small village,"


def test_stop_string_across_token_boundaries_is_not_sent(stub, stubs):
    pb2, _ = stubs
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=40, ignore_eos=True)
    text, ids = stream_text_and_ids(chunks, complete)
    pieces = [c.text for c in chunks]
    # From the middle of the 10th piece to the middle of the 12th: spans token boundaries.
    start = sum(len(p.encode()) for p in pieces[:9]) + 1
    end = sum(len(p.encode()) for p in pieces[:12]) - 1
    raw = text.encode()
    stop = raw[start:end].decode("utf-8", errors="strict")
    assert len(stop) >= 3 and text.find(stop) == len(raw[:start].decode())
    for include in (False, True):
        s_chunks, s_complete, _ = generate(stub, pb2, text=STORY, max_tokens=40, ignore_eos=True,
                                           stop=["no such text", stop],
                                           include_stop_str_in_output=include)
        s_text, s_ids = stream_text_and_ids(s_chunks, s_complete)
        prefix = raw[:start].decode()
        assert s_text == (prefix + stop if include else prefix)
        assert s_complete.finish_reason == pb2.FINISH_REASON_STOP
        assert s_complete.WhichOneof("stop_reason") == "stop_string"
        assert s_complete.stop_string == stop
        assert s_ids == ids[:len(s_ids)]
        assert s_complete.usage.completion_tokens == len(s_ids)


def test_stop_token_id_is_reported(stub, stubs):
    pb2, _ = stubs
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=12, ignore_eos=True)
    _, ids = stream_text_and_ids(chunks, complete)
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=12, ignore_eos=True,
                                   stop_token_ids=[ids[3]])
    _, got = stream_text_and_ids(chunks, complete)
    assert complete.finish_reason == pb2.FINISH_REASON_STOP
    assert complete.stop_token_id == ids[3]
    assert got == ids[:ids.index(ids[3]) + 1]


def test_logprobs_are_consistent_with_a_softmax_and_greedy(stub, stubs):
    pb2, _ = stubs
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=8, ignore_eos=True,
                                   logprobs=5)
    _, ids = stream_text_and_ids(chunks, complete)
    lps = [lp for c in chunks for lp in c.logprobs] + list(complete.logprobs)
    assert [lp.token_id for lp in lps] == ids
    for lp in lps:
        assert len(lp.top) == 5
        assert lp.top[0].token_id == lp.token_id  # greedy picks the most likely
        assert lp.top[0].logprob == pytest.approx(lp.logprob)
        assert all(a.logprob >= b.logprob for a, b in zip(lp.top, lp.top[1:]))
        assert lp.logprob <= 0.0
        assert sum(math.exp(a.logprob) for a in lp.top) <= 1.0 + 1e-5


def test_penalties_bias_and_min_p_change_sampling_as_documented(stub, stubs):
    pb2, _ = stubs
    # A large bias makes one token win every greedy step.
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=5, ignore_eos=True,
                                   logit_bias={42: 100.0})
    assert stream_text_and_ids(chunks, complete)[1] == [42] * 5
    # A frequency penalty then stops it repeating forever.
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=8, ignore_eos=True,
                                   logit_bias={42: 15.0}, frequency_penalty=2.0)
    ids = stream_text_and_ids(chunks, complete)[1]
    assert 1 <= ids.count(42) < 8
    # min_p = 1 keeps only the most likely token: sampling at temperature 1 is then greedy.
    greedy = stream_text_and_ids(*generate(stub, pb2, text=STORY, max_tokens=8,
                                           ignore_eos=True)[:2])[1]
    sampled = stream_text_and_ids(*generate(stub, pb2, text=STORY, max_tokens=8, ignore_eos=True,
                                            temperature=1.0, min_p=1.0, seed=3)[:2])[1]
    assert sampled == greedy


def test_seeded_sampling_is_reproducible_across_batch_mixes(stub, stubs):
    pb2, _ = stubs
    fields = dict(text=STORY, max_tokens=16, ignore_eos=True, temperature=0.9, top_p=0.95,
                  top_k=50, min_p=0.02, presence_penalty=0.3, seed=1234)
    alone = stream_text_and_ids(*generate(stub, pb2, **fields)[:2])[1]
    results, errors = {}, []

    def other(i):
        try:
            generate(stub, pb2, text=f"Other request {i}", max_tokens=24, ignore_eos=True,
                     temperature=1.0)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def seeded():
        results["mixed"] = stream_text_and_ids(*generate(stub, pb2, **fields)[:2])[1]

    threads = [threading.Thread(target=other, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=seeded))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results["mixed"] == alone
    other_seed = stream_text_and_ids(*generate(stub, pb2, **{**fields, "seed": 99})[:2])[1]
    assert other_seed != alone


def test_repeated_prompt_reports_cached_prompt_tokens(stub, stubs):
    pb2, _ = stubs
    prompt = " ".join(f"word{i}" for i in range(120))
    _, first, _ = generate(stub, pb2, text=prompt, max_tokens=2, ignore_eos=True)
    _, second, _ = generate(stub, pb2, text=prompt, max_tokens=2, ignore_eos=True)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens > 100
    # Whole 16-token blocks, short of the last prompt token (it is always computed).
    assert second.usage.cached_prompt_tokens == (second.usage.prompt_tokens - 1) // 16 * 16
    # A different cache salt shares nothing.
    _, salted, _ = generate(stub, pb2, text=prompt, max_tokens=2, ignore_eos=True,
                            cache_salt="tenant-b")
    assert salted.usage.cached_prompt_tokens == 0


SAMPLING_BAD_CASES = [
    (dict(min_p=1.5), "min_p"),
    (dict(min_p=float("nan")), "min_p"),
    (dict(presence_penalty=2.5), "presence_penalty"),
    (dict(frequency_penalty=-3.0), "frequency_penalty"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(repetition_penalty=float("inf")), "repetition_penalty"),
    (dict(logit_bias={10**8: 1.0}), "logit_bias"),
    (dict(logit_bias={5: 1e9}), "logit_bias"),
    (dict(min_tokens=100), "min_tokens"),
    (dict(logprobs=21), "logprobs"),
    (dict(logprobs=-1), "logprobs"),
    (dict(stop=[""]), "stop"),
    (dict(stop=["x" * (1 << 20)]), "stop"),
    (dict(stop=["s"] * 65), "stop"),
]


@pytest.mark.parametrize("fields,needle", SAMPLING_BAD_CASES)
def test_bad_sampling_fields_are_invalid_argument_naming_the_field(stub, stubs, fields, needle):
    pb2, _ = stubs
    with pytest.raises(grpc.RpcError) as err:
        generate(stub, pb2, text="Hello", max_tokens=4, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()
    assert_good_request_succeeds(stub, pb2)


def generate_choices(stub, pb2, **fields):
    """Runs Generate with n > 1; returns {index: (text, ids, complete)} and the message count."""
    texts, ids, completes, after_last = {}, {}, {}, 0
    n = fields["n"]
    for response in stub.Generate(pb2.GenerateRequest(**fields), timeout=120):
        assert len(completes) < n, "a message after the last choice's Complete"
        kind = response.WhichOneof("response")
        message = getattr(response, kind)
        i = message.index
        assert i not in completes, f"a message for choice {i} after its Complete"
        texts[i] = texts.get(i, "") + message.text
        ids.setdefault(i, []).extend(message.token_ids)
        if kind == "complete":
            completes[i] = message
    assert sorted(completes) == list(range(n))
    return {i: (texts[i], ids[i], completes[i]) for i in completes}


def test_n_choices_stream_with_indexes_and_choice_zero_is_the_single_request(stub, stubs):
    pb2, _ = stubs
    # Long enough for full KV blocks (16 tokens by default), which the choices share.
    fields = dict(text=STORY * 4, max_tokens=10, ignore_eos=True, temperature=1.0, seed=99)
    chunks, complete, _ = generate(stub, pb2, **fields)
    single_text, single_ids = stream_text_and_ids(chunks, complete)
    choices = generate_choices(stub, pb2, n=3, **fields)
    assert choices[0][1] == single_ids and choices[0][0] == single_text
    assert len({tuple(ids) for _, ids, _ in choices.values()}) == 3
    for text, ids, done in choices.values():
        assert len(ids) == 10 and done.usage.completion_tokens == 10
        assert done.finish_reason == pb2.FINISH_REASON_LENGTH
        # The prompt was computed by the single request before: every choice found it cached.
        assert done.usage.cached_prompt_tokens > 0
    # The unary call returns the same choices: choice 0 in complete, the others in order.
    reply = stub.Complete(pb2.GenerateRequest(n=3, **fields), timeout=120)
    assert reply.complete.index == 0 and list(reply.complete.token_ids) == single_ids
    assert [c.index for c in reply.other_choices] == [1, 2]
    assert [list(c.token_ids) for c in reply.other_choices] == [choices[1][1], choices[2][1]]


def test_n_out_of_range_is_invalid_argument(stub, stubs):
    pb2, _ = stubs
    for n in (0, -2, 65):
        with pytest.raises(grpc.RpcError) as err:
            generate(stub, pb2, text="Hi", max_tokens=2, n=n)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "n must be" in err.value.details()
    assert_good_request_succeeds(stub, pb2)


def test_prompt_logprobs_come_with_the_first_token_and_name_the_prompt_tokens(stub, stubs):
    pb2, _ = stubs
    prompt_ids = list(stub.Tokenize(pb2.TokenizeRequest(text=STORY), timeout=30).token_ids)
    chunks, complete, _ = generate(stub, pb2, text=STORY, max_tokens=3, ignore_eos=True,
                                   prompt_logprobs=3)
    firsts = [c for c in chunks if c.prompt_logprobs]
    assert len(firsts) == 1 and firsts[0] is chunks[0]
    lps = firsts[0].prompt_logprobs
    assert [lp.token_id for lp in lps] == prompt_ids[1:]
    for lp in lps:
        assert len(lp.top) == 3 and lp.logprob <= 0.0
        assert lp.top[0].logprob >= lp.top[1].logprob >= lp.top[2].logprob
        assert lp.logprob <= lp.top[0].logprob + 1e-6
    assert complete.usage.cached_prompt_tokens == 0
    with pytest.raises(grpc.RpcError) as err:
        generate(stub, pb2, text=STORY, max_tokens=1, prompt_logprobs=21)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt_logprobs" in err.value.details()
