#!/usr/bin/env bash
# One call on a GPU machine verifies the CUDA backend: configure (no gRPC), build the GPU tests and
# benchmarks, run the GPU tests (kernels against float64 / CPU references, the engine on CUDA
# against transformers' goldens), then the benchmarks: kernels with their measured ceilings
# (gpu_bench), torch.matmul at the same shapes, and whole model steps (model_step_bench:
# Llama-3-8B decode at batch 1-256 vs the HBM roofline, 2k prefill MFU, Qwen3-30B-A3B decode).
# Everything lands under $OUT (the device tool's output folder, which brings back at most 8 files;
# build-gpu/out otherwise):
#   summary.txt           device, versions, build time, test counts, what the engine tests
#                         measured, the benchmark tables
#   log.txt               the whole log (configure, build, tests, benchmarks)
#   ctest.txt             ctest -L gpu --output-on-failure
#   gpu_bench.txt         kernels and measured ceilings
#   torch_matmul.txt      torch.matmul at the same shapes, same device
#   model_step_bench.txt  whole model steps and their ceilings
#   benchmarks.csv        the three benchmarks' CSV rows, each under a "# <bench>" line
# KVASIR_GPU_PHASE=tests runs configure, build and tests only; =bench only the benchmarks (after a
# tests call on the same, still warm, machine: the build is kept); default: all of it.
# KVASIR_GPU_QUICK=1 shortens the benchmarks.
# Needs .gpudeps/ (tools/gpu_deps.sh, run beforehand on the developer machine) unless the libraries
# are installed. Exit status: non-zero if the build failed or any GPU test failed or was skipped.
#
#   bash tools/gpu_deps.sh      # here, once
#   run(command="bash tools/gpu_check.sh", carry=[".gpudeps"], timeout_s=600)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/build-gpu/out}
build=$root/build-gpu
quick=${KVASIR_GPU_QUICK:-}
phase=${KVASIR_GPU_PHASE:-all}
mkdir -p "$out" "$build"
exec > >(tee -a "$out/log.txt") 2>&1
tee_pid=$!
# Let tee write the log's tail before the script ends.
trap 'exec 1>&- 2>&-; wait "$tee_pid"' EXIT
summary() { echo "$*" | tee -a "$out/summary.txt" >/dev/null; echo "$*"; }

# nvcc where CUDA images keep it, if it is not on PATH (CMake looks on PATH and at CUDACXX).
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
summary "kvasir gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
summary "$(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"
summary "$(nvcc --version 2>&1 | tail -1) ($(command -v nvcc)); $(cmake --version | head -1); $(python3 -c 'import torch; print("torch", torch.__version__)' 2>&1)"

deps_args=()
if [ -d "$root/.gpudeps" ] && ls "$root"/.gpudeps/*.deb >/dev/null 2>&1; then
  deps=/tmp/kvasir-gpudeps
  rm -rf "$deps" && mkdir -p "$deps"
  for f in "$root"/.gpudeps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$f" "$deps"
    else  # ar archive with a data.tar.*
      (cd "$deps" && ar p "$f" "$(ar t "$f" | grep '^data.tar')" | tar -xJf - 2>/dev/null ||
        ar p "$f" "$(ar t "$f" | grep '^data.tar')" | tar -xf -)
    fi
  done
  multiarch=$(ls "$deps/usr/lib" | grep -m1 linux-gnu)
  deps_args=(-DCMAKE_PREFIX_PATH="$deps/usr" -Dabsl_DIR="$deps/usr/lib/$multiarch/cmake/absl"
             -DGTest_DIR="$deps/usr/lib/$multiarch/cmake/GTest"
             -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json"
             -DCMAKE_LIBRARY_ARCHITECTURE="$multiarch" -DCMAKE_BUILD_RPATH="$deps/usr/lib/$multiarch")
  export LD_LIBRARY_PATH="$deps/usr/lib/$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  summary "dependencies: Abseil and GoogleTest from .gpudeps ($(ls "$root"/.gpudeps/*.deb | xargs -n1 basename | tr '\n' ' '))"
fi

start=$(date +%s)
# The engine without the server (no gRPC there); only the GPU tests and benchmarks are built.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVASIR_SERVER=OFF \
  -DKVASIR_ENGINE=ON -DKVASIR_CUDA=ON -DKVASIR_TESTS=ON -DKVASIR_BENCH=ON "${deps_args[@]}" ||
  { summary "FAILED: configure"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target kernels_cuda_test engine_cuda_test gpu_bench \
  model_step_bench || { summary "FAILED: build"; exit 1; }
summary "build: $(( $(date +%s) - start )) s on $(nproc) cores"

cd "$build"
test_rc=0
if [ "$phase" != bench ]; then
  start=$(date +%s)
  # Each test is its own process (gtest_discover_tests); eight at a time share the device, but the
  # memory planner's tests size pools from the device's free memory, so they run alone after.
  ctest -L gpu -j 8 -E CudaMemoryPlanner --output-on-failure --timeout 300 2>&1 |
    tee "$out/ctest.txt"
  test_rc=${PIPESTATUS[0]}
  cp Testing/Temporary/LastTest.log "$build/last_test_parallel.log" 2>/dev/null
  ctest -L gpu -R CudaMemoryPlanner --output-on-failure --timeout 300 2>&1 | tee -a "$out/ctest.txt"
  [ "${PIPESTATUS[0]}" -ne 0 ] && test_rc=1
  # On a GPU machine a skipped GPU test means the device was not usable: that is a failure too.
  skipped=$(grep -c '\*\*\*Skipped' "$out/ctest.txt")
  [ "$skipped" -gt 0 ] && test_rc=1
  summary "gpu tests: $(grep -E 'tests passed|tests failed' "$out/ctest.txt" | paste -sd ';' -), $skipped skipped (rc $test_rc, $(( $(date +%s) - start )) s)"
  grep -E '\*\*\*Failed|\*\*\*Skipped|Not Run|Timeout' "$out/ctest.txt" | sed 's/^/  /' | tee -a "$out/summary.txt"
  # What the engine tests measured (relative errors, greedy tokens matched), from ctest's log.
  grep -hE "rel. error|greedy tokens" "$build/last_test_parallel.log" 2>/dev/null |
    sed 's/^/  /' >>"$out/summary.txt"
fi
[ "$phase" = tests ] && { echo; cat "$out/summary.txt"; exit "$test_rc"; }

bench_args=(--csv "$build/gpu_bench.csv")
[ -n "$quick" ] && bench_args+=(--quick)
"$build/bench/gpu/gpu_bench" "${bench_args[@]}" 2>&1 | tee "$out/gpu_bench.txt"
summary "gpu_bench rc ${PIPESTATUS[0]}"
torch_args=(--csv "$build/torch_matmul.csv")
[ -n "$quick" ] && torch_args+=(--quick)
PYTHONUNBUFFERED=1 python3 "$root/bench/gpu/torch_matmul.py" "${torch_args[@]}" 2>&1 |
  tee "$out/torch_matmul.txt"
summary "torch_matmul rc ${PIPESTATUS[0]}"

model_args=(--csv "$build/model_step_bench.csv")
[ -n "$quick" ] && model_args+=(--quick)
"$build/bench/gpu/model_step_bench" "${model_args[@]}" 2>&1 | tee "$out/model_step_bench.txt"
summary "model_step_bench rc ${PIPESTATUS[0]}"

for name in gpu_bench torch_matmul model_step_bench; do
  echo "# $name"
  cat "$build/$name.csv" 2>/dev/null
done >"$out/benchmarks.csv"

{
  echo
  echo "---- model_step_bench ----"
  cat "$out/model_step_bench.txt"
  echo "---- gpu_bench ----"
  cat "$out/gpu_bench.txt"
  echo "---- torch.matmul ----"
  cat "$out/torch_matmul.txt"
} >>"$out/summary.txt"
echo
echo "==== summary ($out/summary.txt) ===="
cat "$out/summary.txt"
exit "$test_rc"
