#!/usr/bin/env bash
# The front end's own ceiling: `kvasir serve` with dummy weights of a tiny model
# (bench/models/ceiling_dummy: 1 layer, hidden 32, vocab 1024), so that what a streamed token
# costs is the gRPC server, the engine loop and the scheduler, not the model. Drives it with
# `kvasir bench` on the same machine (the load generator shares the cores: the server's own CPU
# seconds per token are printed too) at several --stream-interval values, plus unary Complete.
#   bash bench/front_end_ceiling.sh            # needs a build (tools/build.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kvasir="${KVASIR_BUILD:-$root/build}/server/kvasir"
port=${PORT:-50231}
requests=${REQUESTS:-4096}
echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
run() {  # $1 = stream interval, rest = bench flags
  local si=$1; shift
  "$kvasir" serve --model "$root/bench/models/ceiling_dummy" --load-format dummy --port "$port" \
    --http-port 0 --threads 1 --max-num-seqs 256 --max-batched-tokens 8192 --max-waiting 0 \
    --stream-interval "$si" >/tmp/kvasir_ceiling_serve.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    "$kvasir" bench --target "localhost:$port" --requests 1 --max-tokens 1 --prompt-tokens 4 \
      >/dev/null 2>&1 && break
    sleep 0.1
  done
  local before after
  before=$(cpu_seconds "$pid")
  "$kvasir" bench --target "localhost:$port" --requests "$requests" --prompt-tokens 4 \
    --max-tokens 64 --concurrency 256 --channels 1 "$@" --json /tmp/kvasir_ceiling.json \
    >/tmp/kvasir_ceiling.txt
  after=$(cpu_seconds "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$si" "$before" "$after" "$*" <<'PY'
import json, sys
si, before, after, flags = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
r = json.load(open("/tmp/kvasir_ceiling.json"))
tokens = r["output_tokens"]
print(f"stream-interval {si:>2} {flags:8} rpcs/s {r['rps']:8.1f}  tokens/s {r['output_tokens_per_s']:9.1f}"
      f"  server CPU {1e6 * (after - before) / tokens:5.2f} us/token"
      f"  ITL p50 {1e3 * r['itl_s'].get('p50', 0):.2f} ms  status {r['status_codes']}")
PY
}
for si in 1 4 8 16; do run "$si"; done
run 1 --unary
