"""Helpers for black-box tests of `kvasir serve`'s HTTP API: a server of a test's own, SSE
parsing, /metrics sampling."""
import contextlib
import json
import re
import subprocess
import time

import httpx
import pytest

from conftest import Server, free_port


def wait_http_ready(server: Server, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"kvasir serve exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.http_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"kvasir serve not ready over HTTP after {timeout_s}s:\n{server.log()}")


@contextlib.contextmanager
def own_http_server(kvasir_bin, model_path, tmp_path, *args, terminate=True):
    """`kvasir serve --model model_path` on free gRPC and HTTP ports with extra flags; yields the
    Server. At the end: SIGTERM and exit code 0 (terminate=True), or a kill."""
    port, http_port = free_port(), free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(kvasir_bin), "serve", "--model", str(model_path), "--host",
                                 "127.0.0.1", "--port", str(port), "--http-port", str(http_port),
                                 *map(str, args)], stdout=log, stderr=subprocess.STDOUT)
        srv = Server(proc, port, log_path, http_port)
        try:
            wait_http_ready(srv)
            yield srv
            if terminate and proc.poll() is None:
                proc.terminate()
                assert proc.wait(timeout=120) == 0, srv.log()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def sse_events(lines):
    """The JSON payloads of an SSE stream's `data:` lines and whether it ended with [DONE]."""
    events, done = [], False
    for line in lines:
        if not line.startswith("data: "):
            continue
        assert not done, f"data after [DONE]: {line}"
        payload = line[len("data: "):]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def metric(url: str, name: str, labels: str = "") -> float:
    """The value of one series in /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.M)
    m = pattern.search(text)
    return float(m.group(1)) if m else 0.0


def wait_until(predicate, timeout_s=60.0):
    """Polls predicate until true (the server's state changes within engine steps)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False
