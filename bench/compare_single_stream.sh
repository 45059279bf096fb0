#!/usr/bin/env bash
# Single-stream prefill and decode speed of Kvasir and llama.cpp (llama-cpp-python) on the same
# GGUF, same thread count, in one run. Needs a build (tools/build.sh) and a venv with
# llama-cpp-python (pip install -r tools/requirements-refs.txt), given as LLAMA_PY.
#   LLAMA_PY=/path/to/venv/bin/python bash bench/compare_single_stream.sh [threads]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${1:-2}
model=${KVASIR_DEFAULT_MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/kvasir/models/SmolLM2-135M-Instruct.Q4_1.gguf}
bench="${KVASIR_BUILD:-$root/build}/bench/single_stream_bench"
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads=$threads"
for p in 128 512; do
  "$bench" --model "$model" --threads "$threads" --prompt-tokens "$p" --decode-tokens 16 --repeats 3
done
"$bench" --model "$model" --threads "$threads" --prompt-tokens 5 --decode-tokens 128 --repeats 3
"${LLAMA_PY:?set LLAMA_PY to a python with llama_cpp}" "$root/tools/gen_llamacpp_goldens.py" \
  --bench --model "$model" --threads "$threads" --repeats 3
