"""Fixtures for black-box tests of the real `kvasir` binary over real gRPC (grpcio).

Environment: KVASIR_BIN (the binary; ctest sets it), KVASIR_REPO (the repository root), and the
default model from tools/setup.sh in ${KVASIR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/kvasir}/models.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest

REPO = pathlib.Path(os.environ.get("KVASIR_REPO", pathlib.Path(__file__).resolve().parents[2]))
SERVER_START_TIMEOUT_S = 180


def default_model_path() -> pathlib.Path:
    cache = os.environ.get("KVASIR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kvasir")
    return pathlib.Path(cache) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def kvasir_bin() -> pathlib.Path:
    candidates = [os.environ.get("KVASIR_BIN"), REPO / "build-server/server/kvasir",
                  REPO / "build/server/kvasir"]
    for c in candidates:
        if c and pathlib.Path(c).is_file():
            return pathlib.Path(c)
    pytest.skip("kvasir binary not found: build it and set KVASIR_BIN")


@pytest.fixture(scope="session")
def model_path() -> pathlib.Path:
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"default model {path} is missing: run tools/setup.sh to fetch it")
    return path


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """Python stubs for proto/kvasir/v1/kvasir.proto, generated now with grpc_tools.protoc."""
    from grpc_tools import protoc
    import grpc_tools
    out = tmp_path_factory.mktemp("stubs")
    proto_dir = REPO / "proto"
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(proto_dir / "kvasir/v1/kvasir.proto")])
    assert rc == 0, "grpc_tools.protoc failed on kvasir.proto"
    sys.path.insert(0, str(out))
    from kvasir.v1 import kvasir_pb2, kvasir_pb2_grpc  # noqa: E402
    return kvasir_pb2, kvasir_pb2_grpc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, port, log_path, http_port=None):
        self.proc = proc
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log_path = log_path
        self.http_port = http_port  # the OpenAI-compatible HTTP API; None when off
        self.http_url = f"http://127.0.0.1:{http_port}" if http_port else None

    def log(self) -> str:
        return pathlib.Path(self.log_path).read_text(errors="replace")


def wait_serving(server: Server, timeout_s: float) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                pytest.fail(f"kvasir serve exited with {server.proc.returncode}:\n{server.log()}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.25)
    pytest.fail(f"kvasir serve not SERVING after {timeout_s}s:\n{server.log()}")


def stop_server(proc) -> None:
    """SIGTERM (a drain), then SIGKILL if it has not exited within a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server(kvasir_bin, model_path, tmp_path_factory):
    """`kvasir serve` with the default model (no --model) on free gRPC and HTTP ports; SIGTERM at
    the end."""
    port, http_port = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("server") / "serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(kvasir_bin), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--http-port", str(http_port), "--max-num-seqs", "8"],
                            stdout=log, stderr=subprocess.STDOUT)
    srv = Server(proc, port, log_path, http_port)
    try:
        wait_serving(srv, SERVER_START_TIMEOUT_S)
        yield srv
    finally:
        stop_server(proc)
        log.close()
    assert proc.returncode == 0, (
        f"kvasir serve exit code {proc.returncode} on SIGTERM:\n{srv.log()}")


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel, stubs):
    return stubs[1].KvasirStub(channel)


def run_cli(kvasir_bin, *args, timeout=300):
    return subprocess.run([str(kvasir_bin), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def run_cli_json(kvasir_bin, *args):
    result = run_cli(kvasir_bin, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
