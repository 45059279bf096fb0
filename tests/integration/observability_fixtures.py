"""Helpers for the monitoring tests: `kvasir serve` with its HTTP port (GET /metrics), the
exposition format, PromQL metric names, and gRPC overload traffic."""
import contextlib
import json
import pathlib
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest

from conftest import REPO, SERVER_START_TIMEOUT_S, Server, free_port, stop_server, wait_serving

DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "kvasir-rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "kvasir-rules.test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "kvasir-dashboard.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def debian_tool(name: str) -> str:
    """Path of a tool from the Debian package `prometheus`; fails (not skips) without it."""
    path = shutil.which(name)
    assert path, f"{name} not found: install the Debian package `prometheus` (tools/setup.sh)"
    return path


def http_get(url: str, timeout: float = 10, data: bytes | None = None) -> tuple[int, str]:
    """GET (or POST with data) url; returns (status, body), error statuses included."""
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class HttpServer(Server):
    def __init__(self, proc, port, http_port, log_path):
        super().__init__(proc, port, log_path)
        self.http_port = http_port
        self.http_address = f"127.0.0.1:{http_port}"

    def metrics(self) -> str:
        status, body = http_get(f"http://{self.http_address}/metrics")
        assert status == 200, f"GET /metrics: {status} {body[:500]}"
        return body

    def post_invalid_completion(self) -> None:
        """A completion request the HTTP API refuses (400): counted in
        kvasir_requests_rejected_total{reason="invalid_argument"}."""
        status, body = http_get(f"http://{self.http_address}/v1/completions",
                                data=b'{"prompt": "Hi", "max_tokens": -1}')
        assert status == 400, f"POST /v1/completions with max_tokens -1: {status} {body}"


def wait_metrics(server: HttpServer, attempts: int = 240) -> None:
    for _ in range(attempts):
        if server.proc.poll() is not None:
            pytest.fail(f"kvasir serve exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if http_get(f"http://{server.http_address}/metrics", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"GET /metrics never answered 200:\n{server.log()}")


@contextlib.contextmanager
def serve_with_http(kvasir_bin, log_dir: pathlib.Path, *extra_args):
    """`kvasir serve` (default model) on free loopback gRPC and HTTP ports; SIGTERM at the end."""
    port, http_port = free_port(), free_port()
    log_path = log_dir / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(kvasir_bin), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--http-port", str(http_port), *map(str, extra_args)],
            stdout=log, stderr=subprocess.STDOUT)
        server = HttpServer(proc, port, http_port, log_path)
        try:
            wait_serving(server, SERVER_START_TIMEOUT_S)
            wait_metrics(server)
            yield server
        finally:
            stop_server(proc)
    assert proc.returncode == 0, f"kvasir serve exit code {proc.returncode}:\n{server.log()}"


# ---- The exposition format (text 0.0.4) ----

def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Returns ({family: type} from the # TYPE lines, {sample name: [sample lines]})."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            types[family] = kind
        elif line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            samples.setdefault(name, []).append(line)
    return types, samples


def family_of(name: str, types: dict[str, str]) -> str:
    """The family a sample name belongs to: a histogram's _bucket/_sum/_count name maps to the
    histogram; any other name (e.g. kvasir_engine_steps_total, or a gauge that happens to end in
    _count) is its own family."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return name


# ---- PromQL ----

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|`[^`]*`")
_COMMENT = re.compile(r"#[^\n]*")
_NAME = re.compile(r"(?<![A-Za-z0-9_:])kvasir_[A-Za-z0-9_:]*")


def kvasir_metric_names(expr: str) -> set[str]:
    """The kvasir_* metric names an expression selects: string literals and comments are not
    names; recorded names (kvasir:...) are not exported metrics."""
    code = _COMMENT.sub("", _STRING.sub('""', expr))
    return set(_NAME.findall(code))


def grafana_to_promql(expr: str, job: str = "kvasir", instance: str = ".*") -> str:
    """A dashboard query with Grafana's variables replaced, as Grafana would send it."""
    return (expr.replace("$__rate_interval", "1m").replace("$job", job)
            .replace("$instance", instance).replace("$model", ".*"))


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL query of the dashboard: panel targets and template variable queries."""
    queries = []
    for panel in dashboard["panels"]:
        queries += [t["expr"] for t in panel.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(selector, label) selects `selector`.
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            assert match, f"variable {var['name']}: unexpected query {q}"
            queries.append(match.group(1))
    return queries


# ---- Prometheus (the Debian binary) ----

class Prometheus:
    def __init__(self, proc, address, log_path):
        self.proc = proc
        self.address = address
        self.log_path = log_path

    def log(self) -> str:
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; fails unless the reply is status "success"."""
        url = f"http://{self.address}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url)
        reply = json.loads(body)
        assert status == 200 and reply.get("status") == "success", f"{url}: {status} {body}"
        return reply["data"]

    def query(self, expr: str, **params) -> list:
        data = self.api("query", query=expr, **params)
        assert data["resultType"] == "vector", data
        return data["result"]

    def rules(self) -> list[dict]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


@contextlib.contextmanager
def run_prometheus(work_dir: pathlib.Path, targets=(), scrape_interval="1s"):
    """A real Prometheus on a free loopback port with deploy/prometheus/kvasir-rules.yml loaded
    and the given targets in job `kvasir` (the job the rules expect); TSDB in work_dir."""
    port = free_port()
    config = work_dir / "prometheus.yml"
    scrape = ""
    if targets:
        scrape = ("scrape_configs:\n  - job_name: kvasir\n    static_configs:\n"
                  f"      - targets: {json.dumps(list(targets))}\n")
    config.write_text(f"global:\n  scrape_interval: {scrape_interval}\n"
                      f"  evaluation_interval: {scrape_interval}\n"
                      f"rule_files:\n  - {json.dumps(str(RULES))}\n{scrape}")
    log_path = work_dir / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [debian_tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={work_dir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
             "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT)
        prom = Prometheus(proc, f"127.0.0.1:{port}", log_path)
        try:
            for _ in range(240):
                assert proc.poll() is None, f"prometheus exited:\n{prom.log()}"
                try:
                    if http_get(f"http://{prom.address}/-/ready", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.25)
            else:
                pytest.fail(f"prometheus never became ready:\n{prom.log()}")
            yield prom
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def poll(check, attempts: int = 120, pause_s: float = 0.5):
    """Calls check() until it returns something truthy (returned) or attempts run out (None)."""
    for _ in range(attempts):
        result = check()
        if result:
            return result
        time.sleep(pause_s)
    return None


# ---- gRPC traffic ----

def run_wave(stub, pb2, concurrency: int, max_tokens: int, prompt: str = "Once upon a time"):
    """`concurrency` streaming Generates at once. Returns (completion tokens of the requests
    that completed, number refused with RESOURCE_EXHAUSTED); any other outcome fails."""
    tokens, refused, errors = [], [], []
    start = threading.Barrier(concurrency)

    def one(i):
        start.wait()
        try:
            complete = None
            for msg in stub.Generate(pb2.GenerateRequest(text=f"{prompt} {i}",
                                                         max_tokens=max_tokens, ignore_eos=True),
                                     timeout=600):
                if msg.WhichOneof("response") == "complete":
                    complete = msg.complete
            assert complete is not None, "stream ended without Complete"
            tokens.append(complete.usage.completion_tokens)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused.append(i)
            else:
                errors.append(f"{e.code()}: {e.details()}")
        except AssertionError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return sum(tokens), len(refused)
