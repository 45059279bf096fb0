#!/usr/bin/env bash
# Run HERE (a Debian 12 developer machine), before tools/gpu_check.sh is sent to a GPU machine.
# The GPU machine has nvcc, CMake, Ninja and PyTorch but none of the C++ libraries the engine and
# the tests build with, and no package registry; this downloads Debian's packages of them (the
# versions this project builds with: Abseil, GoogleTest and GoogleMock, nlohmann-json, PCRE2, utf8proc, xxHash,
# with their shared libraries) into .gpudeps/ (git-ignored), which the device call carries and
# gpu_check.sh unpacks there under /tmp (never into /). Costs no device time. Prints the size to
# carry (the device tool carries at most 64 MiB).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.gpudeps"
cd "$root/.gpudeps"
rm -f ./*.deb
apt-get download libabsl-dev libabsl20220623 libgtest-dev libgmock-dev nlohmann-json3-dev \
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libxxhash-dev libxxhash0 >/dev/null
ls -l ./*.deb
du -sh .
