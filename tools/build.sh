#!/usr/bin/env bash
# Configures and builds Kvasir into build/ (Release, Ninja). Extra arguments go to cmake --build,
# e.g. `bash tools/build.sh --target kvasir`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j "$(nproc)" "$@"
