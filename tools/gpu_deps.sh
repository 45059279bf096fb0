#!/usr/bin/env bash
# Run HERE (a Debian 12 developer machine), before tools/gpu_check.sh is sent to a GPU machine.
# The GPU machine has nvcc, CMake, Ninja and PyTorch but no Abseil or GoogleTest and no package
# registry; this downloads Debian's packages of the two (the versions this project builds with)
# into .gpudeps/ (git-ignored), which the device call carries and gpu_check.sh unpacks there
# under /tmp (never into /). Costs no device time. Prints the size to carry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/.gpudeps"
cd "$root/.gpudeps"
rm -f ./*.deb
apt-get download libabsl-dev libabsl20220623 libgtest-dev >/dev/null
ls -l ./*.deb
du -sh .
