#!/usr/bin/env bash
# Sets up, builds and serves the embedded default model (SmolLM2-135M-Instruct) over gRPC.
# Arguments go to `kvasir serve` (e.g. --port 50052, --model PATH).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/setup.sh"
bash "$root/tools/build.sh" --target kvasir
exec "$root/build/server/kvasir" serve "$@"
