"""A real Prometheus (the Debian binary, 1 s scrapes, deploy/prometheus/kvasir-rules.yml loaded)
scraping a real `kvasir serve --max-num-seqs 2` over loopback while gRPC streams overload it;
everything is read back through Prometheus's HTTP API, as a dashboard or alert would."""
import dataclasses
import json
import math

import grpc
import pytest

from observability_fixtures import (DASHBOARD, dashboard_queries, grafana_to_promql,
                                    parse_exposition, poll, run_prometheus, run_wave,
                                    serve_with_http)

MAX_WAVES = 5
WAVE_CONCURRENCY = 6  # > --max-num-seqs 2: two run, the others wait
WAVE_MAX_TOKENS = 48


@dataclasses.dataclass
class Observed:
    prom: object
    target: str          # host:port Prometheus scrapes
    eval_time: float     # when every query below is evaluated: after the traffic was scraped
    generation_tokens_expected: float
    waves: int


def scalar(result: list) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def counter_in_exposition(text: str, name: str) -> float:
    _, samples = parse_exposition(text)
    (line,) = samples[name]
    return float(line.split()[1])


@pytest.fixture(scope="module")
def observed(kvasir_bin, model_path, stubs, tmp_path_factory):
    pb2, pb2_grpc = stubs
    with serve_with_http(kvasir_bin, tmp_path_factory.mktemp("serve-prom"), "--max-num-seqs", "2") \
            as server, \
            run_prometheus(tmp_path_factory.mktemp("prometheus"),
                           targets=[server.http_address]) as prom, \
            grpc.insecure_channel(server.address) as channel:
        stub = pb2_grpc.KvasirStub(channel)
        assert poll(lambda: prom.query('up{job="kvasir"} == 1')), (
            f"target never up: {prom.api('targets')}\n{prom.log()}")
        server.post_invalid_completion()  # data for the dashboard's rejected-requests panel
        expected = counter_in_exposition(server.metrics(), "kvasir_generation_tokens_total")
        for wave in range(1, MAX_WAVES + 1):
            tokens, refused = run_wave(stub, pb2, WAVE_CONCURRENCY, WAVE_MAX_TOKENS)
            assert (tokens, refused) == (WAVE_CONCURRENCY * WAVE_MAX_TOKENS, 0)
            expected += tokens
            # Wait for a scrape that saw every token of this wave.
            scraped = poll(lambda: prom.query(
                f"kvasir_generation_tokens_total >= {expected}"))
            assert scraped, (f"Prometheus never saw {expected} generation tokens: "
                             f"{prom.query('kvasir_generation_tokens_total')}")
            # A scrape sees waiting requests only if it falls inside the wave: run waves until
            # one did, or MAX_WAVES have run.
            if prom.query("max_over_time(kvasir_num_requests_waiting[1m]) > 0"):
                break
        eval_time = float(scraped[0]["value"][0])  # the query's time, just after that scrape
        yield Observed(prom, server.http_address, eval_time, expected, wave)


def test_target_is_up(observed):
    result = observed.prom.query('up{job="kvasir"}', time=observed.eval_time)
    assert [(r["metric"]["instance"], r["value"][1]) for r in result] == [(observed.target, "1")]
    (target,) = observed.prom.api("targets")["activeTargets"]
    assert target["health"] == "up", target


def test_requests_waited_under_overload(observed):
    peak = scalar(observed.prom.query("max_over_time(kvasir_num_requests_waiting[1m])",
                                      time=observed.eval_time))
    assert peak > 0, f"no scrape saw a waiting request in {observed.waves} waves"


def test_ttft_p90_is_a_finite_number(observed):
    p90 = scalar(observed.prom.query(
        "histogram_quantile(0.9, rate(kvasir_time_to_first_token_seconds_bucket[1m]))",
        time=observed.eval_time))
    assert math.isfinite(p90) and p90 > 0, p90


def test_generation_token_counter_counts_every_streamed_token(observed):
    value = scalar(observed.prom.query("kvasir_generation_tokens_total", time=observed.eval_time))
    assert value == observed.generation_tokens_expected
    increase = scalar(observed.prom.query("increase(kvasir_generation_tokens_total[1m])",
                                          time=observed.eval_time))
    assert increase > 0


def test_rules_evaluate_without_errors_and_record_ttft(observed):
    def all_evaluated():
        rules = observed.prom.rules()
        return rules if all(r["health"] == "ok" for r in rules) else None
    rules = poll(all_evaluated)
    assert rules, [(r["name"], r["health"], r.get("lastError")) for r in observed.prom.rules()]
    p95 = scalar(observed.prom.query("kvasir:time_to_first_token_seconds:p95_5m",
                                     time=observed.eval_time))
    assert math.isfinite(p95) and p95 > 0, p95


def test_every_dashboard_query_returns_data(observed):
    empty = []
    for query in dashboard_queries(json.loads(DASHBOARD.read_text())):
        expr = grafana_to_promql(query, instance=observed.target)
        if not observed.prom.query(expr, time=observed.eval_time):
            empty.append(expr)
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
