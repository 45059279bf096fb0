"""deploy/: the Prometheus rules pass promtool (syntax and their unit tests), the Grafana
dashboard's queries are valid PromQL, and every kvasir_* metric that the rules and the dashboard
select is exported by a real `kvasir serve` (so a rename breaks this test, not a dashboard)."""
import json
import re
import subprocess
import threading

import grpc
import pytest

from observability_fixtures import (DASHBOARD, PROMETHEUS_CONFIG, RULES, RULES_TEST, debian_tool,
                                    dashboard_queries, family_of, grafana_to_promql,
                                    kvasir_metric_names, parse_exposition, run_prometheus,
                                    run_wave, serve_with_http)


def promtool(*args, cwd=None):
    result = subprocess.run([debian_tool("promtool"), *map(str, args)], capture_output=True,
                            text=True, timeout=120, cwd=cwd)
    return result.returncode, result.stdout + result.stderr


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_promtool_check_rules_accepts_the_rules():
    rc, out = promtool("check", "rules", RULES)
    assert rc == 0, out
    assert "SUCCESS" in out, out


def test_promtool_rule_unit_tests_pass():
    rc, out = promtool("test", "rules", RULES_TEST)
    assert rc == 0, out
    assert "SUCCESS" in out, out


def test_promtool_rule_unit_tests_fail_when_a_threshold_moves(tmp_path):
    # The unit tests pin the thresholds: raising the queue and KV thresholds above the synthetic
    # values must make them fail (they are not vacuous).
    rules = RULES.read_text()
    for old, new in [("kvasir_num_requests_waiting > 10", "kvasir_num_requests_waiting > 100"),
                     ("kvasir_kv_cache_usage_ratio > 0.9", "kvasir_kv_cache_usage_ratio > 0.99")]:
        assert old in rules
        (tmp_path / RULES.name).write_text(rules.replace(old, new))
        (tmp_path / RULES_TEST.name).write_text(RULES_TEST.read_text())
        rc, out = promtool("test", "rules", tmp_path / RULES_TEST.name)
        assert rc != 0, f"unit tests still pass with `{new}`:\n{out}"


def test_example_prometheus_config_is_valid():
    rc, out = promtool("check", "config", PROMETHEUS_CONFIG)
    assert rc == 0, out


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool parses PromQL only inside rules: one recording rule per dashboard query.
    queries = [grafana_to_promql(q) for q in dashboard_queries(load_dashboard())]
    rules = "groups:\n  - name: dashboard\n    rules:\n" + "".join(
        f"      - record: dashboard_query_{i}\n        expr: {json.dumps(q)}\n"
        for i, q in enumerate(queries))
    (tmp_path / "dashboard-rules.yml").write_text(rules)
    rc, out = promtool("check", "rules", tmp_path / "dashboard-rules.yml")
    assert rc == 0, out
    assert f"SUCCESS: {len(queries)} rules found" in out, out


def test_dashboard_uses_the_datasource_input_and_filters_every_selector():
    dash = load_dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert {"job", "model", "instance"} <= variables.keys()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            expr = target["expr"]
            # Every selector is followed by a matcher block that applies the variables.
            for name in kvasir_metric_names(expr) | ({"up"} if "up{" in expr else set()):
                for block in expr.split(name + "{")[1:]:
                    matchers = block.split("}")[0]
                    assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
                        f"{panel['title']}: {name} not filtered by job/instance in {expr}")
                assert expr.count(name) == expr.count(name + "{"), f"{panel['title']}: {expr}"


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.9, sum by (le) (rate(kvasir_time_to_first_token_seconds_bucket[5m])))',
     {"kvasir_time_to_first_token_seconds_bucket"}),
    ('kvasir:preemptions:rate5m > 0.1', set()),  # a recorded name, not an exported one
    ('sum(rate(kvasir_requests_finished_total{finish_reason="kvasir_not_a_metric"}[5m]))',
     {"kvasir_requests_finished_total"}),
    ('rate(kvasir_step_tokens_sum[1m]) / rate(kvasir_step_tokens_count[1m]) # kvasir_comment',
     {"kvasir_step_tokens_sum", "kvasir_step_tokens_count"}),
    ('label_values(kvasir_model_info{job=~"$job"}, name)', {"kvasir_model_info"}),
])
def test_metric_names_are_extracted_from_promql(expr, names):
    assert kvasir_metric_names(expr) == names


def test_histogram_suffixes_map_to_their_family_only_for_histograms():
    types = {"kvasir_step_tokens": "histogram", "kvasir_engine_steps_total": "counter",
             "kvasir_kv_cache_blocks": "gauge"}
    assert family_of("kvasir_step_tokens_bucket", types) == "kvasir_step_tokens"
    assert family_of("kvasir_step_tokens_sum", types) == "kvasir_step_tokens"
    assert family_of("kvasir_step_tokens_count", types) == "kvasir_step_tokens"
    assert family_of("kvasir_engine_steps_total", types) == "kvasir_engine_steps_total"
    # Not a histogram's sample: the name is its own (here unknown) family.
    assert family_of("kvasir_engine_steps_count", types) == "kvasir_engine_steps_count"
    assert family_of("kvasir_kv_cache_blocks", types) == "kvasir_kv_cache_blocks"


@pytest.fixture(scope="module")
def rule_queries(tmp_path_factory):
    """The rules' expressions as a real Prometheus loaded them (GET /api/v1/rules)."""
    with run_prometheus(tmp_path_factory.mktemp("prometheus-rules")) as prom:
        rules = prom.rules()
    assert rules, "Prometheus loaded no rules"
    return [r["query"] for r in rules]


@pytest.fixture(scope="module")
def exposition(kvasir_bin, model_path, stubs, tmp_path_factory):
    """/metrics of a real server after traffic (gRPC streams, more than --max-num-seqs at once;
    an HTTP request the API refuses; HTTP scrapes), so that labeled families have series."""
    pb2, pb2_grpc = stubs
    with serve_with_http(kvasir_bin, tmp_path_factory.mktemp("serve-rules"),
                         "--max-num-seqs", "2") as server:
        with grpc.insecure_channel(server.address) as channel:
            tokens, _ = run_wave(pb2_grpc.KvasirStub(channel), pb2, concurrency=4, max_tokens=8)
            assert tokens == 4 * 8
        server.post_invalid_completion()
        server.metrics()  # so that the next scrape has counted a GET /metrics
        return server.metrics()


def test_rules_and_dashboard_select_only_metrics_the_server_exports(rule_queries, exposition):
    types, samples = parse_exposition(exposition)
    referenced = {}
    for expr in rule_queries:
        for name in kvasir_metric_names(expr):
            referenced.setdefault(name, "rules")
    for expr in dashboard_queries(load_dashboard()):
        for name in kvasir_metric_names(expr):
            referenced.setdefault(name, "dashboard")
    # Not vacuous: the extraction found the histograms, gauges and counters the alerts use.
    assert {"kvasir_time_to_first_token_seconds_bucket", "kvasir_num_requests_waiting",
            "kvasir_kv_cache_usage_ratio", "kvasir_requests_finished_total",
            "kvasir_engine_loop_alive", "kvasir_step_tokens_sum"} <= referenced.keys()
    problems = []
    for name, where in sorted(referenced.items()):
        family = family_of(name, types)
        if family not in types:
            problems.append(f"{name} ({where}): no family {family} in /metrics")
        elif name not in samples:
            problems.append(f"{name} ({where}): family {family} ({types[family]}) has no "
                            f"{name} series")
    assert not problems, "\n".join(problems)


def test_promtool_finds_nothing_to_report_in_metrics_scraped_under_load(kvasir_bin, stubs,
                                                                         tmp_path):
    """`promtool check metrics` on /metrics scraped while streams run (gRPC and HTTP, more of
    them than --max-num-seqs, so requests wait and get preempted or queued) and after."""
    pb2, pb2_grpc = stubs
    promtool = debian_tool("promtool")
    scrapes = []
    with serve_with_http(kvasir_bin, tmp_path, "--max-num-seqs", "2") as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb2_grpc.KvasirStub(channel)
            result = {}
            wave = threading.Thread(target=lambda: result.update(
                r=run_wave(stub, pb2, concurrency=6, max_tokens=24)))
            wave.start()
            while wave.is_alive():
                scrapes.append(server.metrics())
                server.post_invalid_completion()
                wave.join(timeout=0.25)
            assert result["r"][0] == 6 * 24
        scrapes.append(server.metrics())
    assert len(scrapes) >= 2
    # Not vacuous: a scrape taken during the load saw requests waiting.
    assert any(re.search(r"^kvasir_num_requests_waiting [1-9]", s, re.M) for s in scrapes[:-1])
    for text in scrapes[::max(1, len(scrapes) // 8)] + scrapes[-1:]:  # <= 10 promtool runs
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=60)
        assert check.returncode == 0 and check.stdout == "" and check.stderr == "", (
            f"promtool check metrics: rc {check.returncode}\n{check.stdout}{check.stderr}")
