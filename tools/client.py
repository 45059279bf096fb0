#!/usr/bin/env python3
"""A one-shot streaming client for a running `kvasir serve`.

    .venv/bin/python tools/client.py --prompt "The capital of France is" --max-tokens 32

Generates the Python stubs from proto/ at start (grpc_tools, installed by tools/setup.sh).
"""
import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stubs():
    out = tempfile.mkdtemp(prefix="kvasir_stubs_")
    proto_dir = os.path.join(ROOT, "proto")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", "kvasir/v1/kvasir.proto"])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return (importlib.import_module("kvasir.v1.kvasir_pb2"),
            importlib.import_module("kvasir.v1.kvasir_pb2_grpc"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", default="localhost:50051")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--seed", type=int)
    args = ap.parse_args()
    pb, pb_grpc = load_stubs()
    stub = pb_grpc.KvasirStub(grpc.insecure_channel(args.target))
    req = pb.GenerateRequest(text=args.prompt, max_tokens=args.max_tokens)
    if args.temperature is not None:
        req.temperature = args.temperature
    if args.seed is not None:
        req.seed = args.seed
    for msg in stub.Generate(req):
        if msg.HasField("chunk"):
            print(msg.chunk.text, end="", flush=True)
        else:
            c = msg.complete
            print(c.text)
            print(f"[{pb.FinishReason.Name(c.finish_reason)}; prompt {c.usage.prompt_tokens} "
                  f"tokens, completion {c.usage.completion_tokens}]", file=sys.stderr)


if __name__ == "__main__":
    main()
